"""Where Runback itself runs: its own Cloud Run service, from the instance's environment.

Cloud Run sets ``K_SERVICE`` and ``K_REVISION`` in every container
(https://cloud.google.com/run/docs/container-contract#env-vars); the project and region come
from the metadata server (``project/project-id``, ``instance/region``, which answers
``projects/PROJECT_NUMBER/regions/REGION``), with the header ``Metadata-Flavor: Google``.
``GCE_METADATA_HOST`` points elsewhere (an emulator), as it does for google-auth.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.ports import ServiceRef

DEFAULT_HOST = "metadata.google.internal"
TIMEOUT_S = 2.0


class MetadataUnavailable(Exception):
    """The metadata server could not say (not on Google Cloud, or it did not answer)."""


@dataclass(frozen=True)
class MetadataServer:
    host: str = DEFAULT_HOST

    def get(self, path: str) -> str:
        import requests

        url = f"http://{self.host}/computeMetadata/v1/{path}"
        try:
            answer = requests.get(url, headers={"Metadata-Flavor": "Google"}, timeout=TIMEOUT_S)
        except requests.RequestException as error:
            raise MetadataUnavailable(f"{url}: {type(error).__name__}") from None
        if answer.status_code != 200:
            raise MetadataUnavailable(f"{url}: HTTP {answer.status_code}")
        return answer.text.strip()

    def project(self) -> str:
        return self.get("project/project-id")

    def region(self) -> str:
        """``us-central1`` from ``projects/123/regions/us-central1``."""
        return self.get("instance/region").rsplit("/", 1)[-1]


def own_service(name: str, project: str | None, metadata: MetadataServer) -> ServiceRef:
    """Runback's own service ``name`` (``K_SERVICE``), in ``project`` (or the metadata
    server's) and the metadata server's region. Raises MetadataUnavailable."""
    return ServiceRef(project=project or metadata.project(), region=metadata.region(), name=name)
