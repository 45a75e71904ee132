"""Ingress for the Cloud Run emulator: who may reach a service's URLs.

"Internal" and "Internal and Cloud Load Balancing" ingress keep requests from the internet
away from the run.app URL and custom domains ("Requests from other sources, including the
internet, cannot reach your service at the run.app URL or custom domains":
https://cloud.google.com/run/docs/securing/ingress). Google's front end answers such a request
itself; the emulator answers with the same HTML 404 page as for a reserved path.
"""

from __future__ import annotations

import re

from google.cloud import run_v2

Ingress = run_v2.IngressTraffic
INTERNAL_INGRESS = (
    Ingress.INGRESS_TRAFFIC_INTERNAL_ONLY,
    Ingress.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
)
# gcloud's words for the settings (``--ingress``), as the control API takes them
INGRESS_WORDS = {
    "all": Ingress.INGRESS_TRAFFIC_ALL,
    "internal": Ingress.INGRESS_TRAFFIC_INTERNAL_ONLY,
    "internal-and-cloud-load-balancing": Ingress.INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
}


def service_path(emulated: str) -> str:
    """The path the service was asked for: ``/_svc/S[/_tag/T]/health`` or
    ``/_domain/HOST/health`` -> ``/health``."""
    return re.sub(r"^/(?:_svc/[^/]+(?:/_tag/[^/]+)?|_domain/[^/]+)", "", emulated) or "/"
