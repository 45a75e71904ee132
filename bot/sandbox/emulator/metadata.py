"""The metadata server of a Cloud Run instance, as far as Runback reads it.

A Cloud Run container finds its own project and region here
(https://cloud.google.com/run/docs/container-contract#metadata-server): ``project/project-id``
and ``instance/region`` (``projects/PROJECT_NUMBER/regions/REGION``), each only with the header
``Metadata-Flavor: Google``. Point a process at it with ``GCE_METADATA_HOST`` (the variable
google-auth reads too).
"""

from __future__ import annotations

from bot.sandbox.emulator.http import Request, Response, Router, text_response

ROOT = "/computeMetadata/v1"


class MetadataEmulator:
    def __init__(
        self,
        project: str = "runback-sandbox",
        region: str = "us-central1",
        project_number: str = "123456789012",
    ) -> None:
        self.project = project
        self.region = region
        self.project_number = project_number

    def register(self, router: Router) -> None:
        add = router.add
        add("GET", ROOT + "/project/project-id", "metadata.project", self._project)
        add("GET", ROOT + "/project/numeric-project-id", "metadata.number", self._number)
        add("GET", ROOT + "/instance/region", "metadata.region", self._region)

    def _answer(self, request: Request, value: str) -> Response:
        if request.headers.get("metadata-flavor") != "Google":
            return text_response("Missing Metadata-Flavor:Google header.\n", 403)
        response = text_response(value, 200, "application/text")
        response.headers["Metadata-Flavor"] = "Google"
        return response

    def _project(self, request: Request) -> Response:
        return self._answer(request, self.project)

    def _number(self, request: Request) -> Response:
        return self._answer(request, self.project_number)

    def _region(self, request: Request) -> Response:
        return self._answer(request, f"projects/{self.project_number}/regions/{self.region}")
