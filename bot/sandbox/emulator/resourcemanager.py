"""Resource Manager ``projects.testIamPermissions`` (v1 and v3 REST): the permissions the
caller (Runback) holds on a project, for ``doctor``. ``granted`` None holds every permission;
a set holds those only (tests take some away to see doctor name the fix)."""

from __future__ import annotations

import threading

from bot.sandbox.emulator.http import HttpError, Request, Response, Router, json_response

ROUTE = r"/v[13]/projects/(?P<project>[^/:]+):testIamPermissions"
MAX_PERMISSIONS = 100  # "Permissions with wildcards ... are not allowed", at most 100


class ResourceManagerEmulator:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.granted: set[str] | None = None

    def register(self, router: Router) -> None:
        router.add("POST", ROUTE, "resourcemanager.projects.testIamPermissions", self._test)

    def _test(self, request: Request) -> Response:
        body = request.json() if request.body else {}
        asked = body.get("permissions") if isinstance(body, dict) else None
        if not isinstance(asked, list) or not all(isinstance(p, str) for p in asked):
            raise HttpError(400, "Invalid JSON payload received. permissions: a list of strings")
        if len(asked) > MAX_PERMISSIONS or any("*" in p for p in asked):
            raise HttpError(400, "Request contains an invalid argument.")
        with self._lock:
            held = [p for p in asked if self.granted is None or p in self.granted]
        return json_response({"permissions": held} if held else {})
