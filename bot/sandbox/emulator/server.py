"""All REST emulators on one local port: Cloud Run Admin v2, the services' own URLs, Cloud
Logging, Cloud SQL Admin, Secret Manager, the Slack Web API, and the control API under
``/_emulator/``; plus the Cloud Monitoring gRPC emulator on a port of its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

from bot.sandbox.emulator.cloudrun import CloudRunEmulator
from bot.sandbox.emulator.http import (
    EmulatorHTTPServer,
    Fault,
    HttpError,
    Request,
    Response,
    Router,
    json_response,
    serve_in_thread,
)
from bot.sandbox.emulator.identity import IdentityEmulator
from bot.sandbox.emulator.logging_api import LoggingEmulator
from bot.sandbox.emulator.metadata import MetadataEmulator
from bot.sandbox.emulator.monitoring import MonitoringEmulator
from bot.sandbox.emulator.resourcemanager import ResourceManagerEmulator
from bot.sandbox.emulator.run_secrets import secret_access_check
from bot.sandbox.emulator.secretmanager import SecretManagerEmulator
from bot.sandbox.emulator.slack_api import SlackEmulator
from bot.sandbox.emulator.sqladmin import SqlAdminEmulator


class Emulator:
    def __init__(
        self, slack_token: str = "xoxb-sandbox", clock: Callable[[], float] = time.time
    ) -> None:
        self.router = Router()
        self.identity = IdentityEmulator()
        self.cloudrun = CloudRunEmulator(clock=clock, identity=self.identity)
        self.monitoring = MonitoringEmulator(self.cloudrun, self.router, clock)
        self.logging = LoggingEmulator()
        self.cloudrun.add_log_listener(self.logging.add_entry)  # Cloud Run's own logs
        self.slack = SlackEmulator(token=slack_token)
        self.sqladmin = SqlAdminEmulator(clock=clock)
        self.secrets = SecretManagerEmulator(clock=clock)
        self.cloudrun.revision_check = secret_access_check(self.secrets)
        self.resourcemanager = ResourceManagerEmulator()
        self.metadata = MetadataEmulator()  # a Cloud Run instance's metadata server
        parts = (self.cloudrun, self.monitoring, self.logging, self.slack, self.identity)
        for part in (*parts, self.sqladmin, self.secrets, self.resourcemanager, self.metadata):
            part.register(self.router)
        self._register_control()
        self._server: EmulatorHTTPServer | None = None

    def start(self, host: str = "127.0.0.1", port: int = 0) -> Emulator:
        self._server = serve_in_thread(self.router, host, port)
        self.monitoring.start(host)
        self.cloudrun.base_url = self.url
        self.slack.base_url = self.url
        return self

    def stop(self) -> None:
        self.monitoring.stop()
        self.slack.socket_mode.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def host(self) -> str:
        assert self._server is not None, "emulator not started"
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def env(self) -> dict[str, str]:
        """The environment that points a bot at these emulators."""
        return {
            "RUNBACK_EMULATOR_HOST": self.host,
            "RUNBACK_EMULATOR_GRPC_HOST": self.monitoring.host,
            "SLACK_API_URL": f"{self.url}/api/",
            "GCE_METADATA_HOST": self.host,  # read by google-auth and by Runback on Cloud Run
        }

    # -- control API: faults and the request log --------------------------------------------

    def _register_control(self) -> None:
        add = self.router.add
        add("POST", "/_emulator/faults", "_emulator.faults.add", self._add_fault)
        add("DELETE", "/_emulator/faults", "_emulator.faults.clear", self._clear_faults)
        add("GET", "/_emulator/faults", "_emulator.faults.list", self._list_faults)
        add("GET", "/_emulator/requests", "_emulator.requests.list", self._list_requests)
        add("DELETE", "/_emulator/requests", "_emulator.requests.clear", self._clear_requests)

    def _add_fault(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not body.get("api"):
            raise HttpError(400, "a fault needs 'api' (e.g. run.services.patch)")
        fault = Fault(
            api=str(body["api"]),
            status=body.get("status"),
            delay_ms=int(body.get("delay_ms", 0)),
            times=body.get("times", 1),
            message=str(body.get("message", "injected fault")),
            after=bool(body.get("after", False)),
        )
        self.router.faults.add(fault)
        return json_response(asdict(fault))

    def _clear_faults(self, request: Request) -> Response:
        self.router.faults.clear()
        return json_response({})

    def _list_faults(self, request: Request) -> Response:
        return json_response([asdict(f) for f in self.router.faults.list()])

    def _list_requests(self, request: Request) -> Response:
        api = request.arg("api") or None
        return json_response([asdict(c) for c in self.router.calls.list(api)])

    def _clear_requests(self, request: Request) -> Response:
        self.router.calls.clear()
        return json_response({})
