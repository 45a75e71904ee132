"""Which permissions Runback holds on a project: Resource Manager v3 ``projects.
testIamPermissions`` over REST (no client library for it is a dependency: one POST with the
Application Default Credentials, or anonymously against the emulator). Used by ``doctor``.
https://cloud.google.com/resource-manager/reference/rest/v3/projects/testIamPermissions
"""

from __future__ import annotations

from typing import Any

GOOGLE = "https://cloudresourcemanager.googleapis.com"
TIMEOUT_S = 10.0


class PermissionsError(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ProjectPermissions:
    def __init__(self, emulator_host: str | None) -> None:
        self._emulator_host = emulator_host
        self._session: Any = None

    def held(self, project: str, permissions: list[str]) -> list[str]:
        """The subset of ``permissions`` the caller holds on ``project``."""
        import requests

        base = f"http://{self._emulator_host}" if self._emulator_host else GOOGLE
        url = f"{base}/v3/projects/{project}:testIamPermissions"
        try:
            answer = self._http().post(url, json={"permissions": permissions}, timeout=TIMEOUT_S)
        except requests.RequestException as error:
            raise PermissionsError("unavailable", str(error)[:200]) from None
        if answer.status_code == 403:
            raise PermissionsError("permission_denied", f"{project}: 403")
        if answer.status_code == 404:
            raise PermissionsError("not_found", project)
        if not answer.ok:
            raise PermissionsError("unavailable", f"HTTP {answer.status_code}")
        return list(answer.json().get("permissions") or [])

    def _http(self) -> Any:
        if self._session is None:
            if self._emulator_host:
                import requests

                self._session = requests.Session()
            else:
                import google.auth
                from google.auth.transport.requests import AuthorizedSession

                credentials, _ = google.auth.default(
                    scopes=["https://www.googleapis.com/auth/cloud-platform"]
                )
                self._session = AuthorizedSession(credentials)
        return self._session
