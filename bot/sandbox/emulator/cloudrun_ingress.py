"""Google's front end for the Cloud Run emulator: paths it answers itself, and ingress (who
may reach a service's URLs).

"Internal" and "Internal and Cloud Load Balancing" ingress keep requests from the internet
away from the run.app URL and custom domains ("Requests from other sources, including the
internet, cannot reach your service at the run.app URL or custom domains":
https://cloud.google.com/run/docs/securing/ingress). Google's front end answers such a request
itself; the emulator answers with the same HTML 404 page as for a reserved path.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

from google.cloud import run_v2

from bot.sandbox.emulator.http import HttpError, Request, Response, json_response, text_response

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


# RESERVED_PATH_NOTE: Cloud Run's front end serves some paths itself: "/eventlog", paths under
# "/_ah/", and "some paths ending in z" (https://cloud.google.com/run/docs/known-issues,
# "Reserved URL paths"). In practice exactly ``/healthz`` is answered with Google's own HTML 404
# and never reaches the container, while ``/healthz/``, ``/health``, ``/readyz`` do
# (funkyhq/funky#30, checkmarble/marble-backend#977, kkdai/linebot-file#5). Custom domains
# (domain mappings) do not reserve it.
GOOGLE_404_HTML = """<!DOCTYPE html>
<html lang=en>
  <meta charset=utf-8>
  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">
  <title>Error 404 (Not Found)!!1</title>
  <a href=//www.google.com/><span id=logo aria-label=Google></span></a>
  <p><b>404.</b> <ins>That’s an error.</ins>
  <p>The requested URL <code>{path}</code> was not found on this server.
  <ins>That’s all we know.</ins>
"""


class IngressMixin:
    """CloudRunEmulator's ingress: set it, and refuse outside callers of internal services."""

    _lock: threading.RLock
    _services: dict[str, run_v2.Service]
    _domains: dict[str, str]
    internal_callers: bool
    _find_by_short: Callable[[str], run_v2.Service]

    def set_ingress(self, service: str, ingress: str) -> None:
        """``all``, ``internal`` or ``internal-and-cloud-load-balancing`` (gcloud's words), as
        ``gcloud run services update --ingress`` would set it."""
        if ingress not in INGRESS_WORDS:
            raise ValueError(f"ingress is one of {', '.join(INGRESS_WORDS)}")
        with self._lock:
            self._find_by_short(service).ingress = INGRESS_WORDS[ingress]

    def _refused_by_ingress(self, request: Request) -> Response | None:
        """Google's front end, for a service whose ingress is internal (or internal and Cloud
        Load Balancing): a request from outside never reaches it, on its run.app or tag URL or
        its custom domain (https://cloud.google.com/run/docs/securing/ingress), and is answered
        with Google's own HTML 404. ``internal_callers``: the caller sits in the project's VPC
        (Runback with Direct VPC egress)."""
        with self._lock:
            short = self._domains.get(request.params.get("host", ""), request.params.get("service"))
            service = self._services_by_short().get(short or "")
            if service is None or service.ingress not in INTERNAL_INGRESS or self.internal_callers:
                return None
        page = GOOGLE_404_HTML.format(path=service_path(request.path))
        return text_response(page, 404, "text/html; charset=UTF-8")

    def _services_by_short(self) -> dict[str, run_v2.Service]:
        return {name.rsplit("/", 1)[-1]: service for name, service in self._services.items()}

    def _control_ingress(self, request: Request) -> Response:
        """``{"ingress": "internal"}``; ``{"internal_callers": true}`` on any service makes
        every caller internal (Runback with Direct VPC egress)."""
        body = _json_body(request)
        try:
            if "ingress" in body:
                self.set_ingress(request.params["service"], str(body["ingress"]))
        except ValueError as error:
            raise HttpError(400, str(error)) from error
        if "internal_callers" in body:
            self.internal_callers = bool(body["internal_callers"])
        service = self._find_by_short(request.params["service"])
        ingress = next(k for k, v in INGRESS_WORDS.items() if v == service.ingress)
        return json_response({"ingress": ingress, "internal_callers": self.internal_callers})


def _json_body(request: Request) -> dict[str, object]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as error:
        raise HttpError(400, "body is not JSON") from error
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    return body
