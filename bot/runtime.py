"""Assembles the bot from app.yaml and the environment: the imperative shell's one constructor."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bot.clock import SystemClock
from bot.config import Config
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ports import Clock
from bot.slack.render import Renderer
from bot.store import Store

T = TypeVar("T")
log = logging.getLogger("runback.runtime")


class Lazy(Generic[T]):
    """Builds the real object on first use. Google's libraries take seconds to import; Slack
    wants its ack within 3 s of a cold start, and most commands never touch them."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._object: T | None = None
        self._lock = threading.Lock()

    def resolve(self) -> T:
        if self._object is None:
            with self._lock:
                if self._object is None:
                    self._object = self._factory()
        return self._object

    @property
    def ready(self) -> bool:
        return self._object is not None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)


@dataclass(frozen=True)
class Settings:
    slack_bot_token: str
    slack_signing_secret: str
    slack_api_url: str | None
    slack_app_token: str | None
    database_url: str
    emulator_host: str | None
    emulator_grpc_host: str | None
    alert_token: str | None
    tick_token: str | None
    port: int
    google_project: str | None
    lease_s: float
    retry_deadline_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            slack_bot_token=env.get("SLACK_BOT_TOKEN", ""),
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET", ""),
            slack_api_url=env.get("SLACK_API_URL") or None,
            slack_app_token=env.get("SLACK_APP_TOKEN") or None,
            database_url=env.get("DATABASE_URL") or "sqlite:///runback.db",
            emulator_host=env.get("RUNBACK_EMULATOR_HOST") or None,
            emulator_grpc_host=env.get("RUNBACK_EMULATOR_GRPC_HOST") or None,
            alert_token=env.get("RUNBACK_ALERT_TOKEN") or None,
            tick_token=env.get("RUNBACK_TICK_TOKEN") or None,
            port=int(env.get("PORT") or 3000),
            google_project=env.get("GOOGLE_CLOUD_PROJECT") or None,
            lease_s=float(env.get("RUNBACK_LEASE_S") or 15),
            retry_deadline_s=float(env.get("RUNBACK_RETRY_DEADLINE_S") or 20),
        )

    def missing(self) -> list[str]:
        """The environment variables ``serve`` cannot run without."""
        required = {
            "SLACK_BOT_TOKEN": self.slack_bot_token,
            "SLACK_SIGNING_SECRET": self.slack_signing_secret,
        }
        return [name for name, value in required.items() if not value]


@dataclass
class Runtime:
    settings: Settings
    config: Config
    deps: Deps
    engine: Engine
    wsgi: Any
    bolt_app: Any
    warnings: list[str] = field(default_factory=list)  # app.yaml facts that fail on real GCP

    def warm_up(self) -> None:
        """Build the Google clients and compile the templates and the first queries now, rather
        than on the first command that needs them."""
        self.deps.renderer.warm_up()
        self.deps.store.lock_holder("")
        for port in (self.deps.cloudrun, self.deps.probe, self.deps.metrics, self.deps.audit_sink):
            if isinstance(port, Lazy):
                try:
                    adapter = port.resolve()
                    if hasattr(adapter, "warm_up"):
                        adapter.warm_up()
                except Exception:  # a warm-up is best effort; the first real call retries
                    log.warning("could not prepare %s ahead of time", type(port).__name__)


def _cloudrun(settings: Settings) -> Any:
    from bot.gcp.cloudrun import CloudRunAdmin

    return CloudRunAdmin(settings.emulator_host, retry_deadline_s=settings.retry_deadline_s)


def _audit_sink(settings: Settings, config: Config) -> Any:
    from bot.gcp.logs import CloudLoggingAudit

    project = settings.google_project or config.services[0].project
    return CloudLoggingAudit(project=project, emulator_host=settings.emulator_host)


def _metrics(settings: Settings) -> Any:
    from bot.gcp.monitoring import CloudMonitoring

    return CloudMonitoring(settings.emulator_grpc_host, retry_deadline_s=settings.retry_deadline_s)


def _probe(settings: Settings) -> Any:
    from bot.gcp.probe import HttpProbe

    if not settings.emulator_host:
        return HttpProbe()  # ID tokens from google.oauth2.id_token.fetch_id_token
    from bot.sandbox.emulator.identity import emulator_id_tokens, emulator_url_rewrite

    return HttpProbe(
        id_token_source=emulator_id_tokens(settings.emulator_host),
        rewrite_url=emulator_url_rewrite(settings.emulator_host),
    )


def config_warnings(config: Config, renderer: Renderer) -> list[str]:
    """What in app.yaml will not work on real Cloud Run, said at start."""
    from bot.policy.platform import health_path_reserved

    return [
        renderer.text(
            "startup.health_path_reserved",
            index=index,
            service=service.name,
            path=service.health_path,
            has_url=bool(service.url),
        )
        for index, service in enumerate(config.services)
        if health_path_reserved(service.health_path)
    ]


def build_runtime(config: Config, settings: Settings, clock: Clock | None = None) -> Runtime:
    from bot.ops.alerts_endpoint import handle_alert
    from bot.slack.app import build_app
    from bot.slack.chat import SlackChat, SlackDirectory, make_client
    from bot.web import Hooks, make_wsgi_app

    client = make_client(settings.slack_bot_token, settings.slack_api_url)
    audit_sink = Lazy(lambda: _audit_sink(settings, config))
    deps = Deps(
        config=config,
        store=Store(settings.database_url),
        cloudrun=Lazy(lambda: _cloudrun(settings)),  # type: ignore[arg-type]
        probe=Lazy(lambda: _probe(settings)),  # type: ignore[arg-type]
        chat=SlackChat(client),
        directory=SlackDirectory(client),
        audit_sink=audit_sink,  # type: ignore[arg-type]
        renderer=Renderer(config.locale),
        clock=clock or SystemClock(),
        metrics=Lazy(lambda: _metrics(settings)),  # type: ignore[arg-type]
        logs=audit_sink,  # type: ignore[arg-type]  # the same Cloud Logging client reads
    )
    warnings = config_warnings(config, deps.renderer)
    for warning in warnings:
        log.warning("%s", warning)
    engine = Engine(deps, lease_s=settings.lease_s)
    bolt_app = build_app(deps, engine, client, settings.slack_signing_secret)
    hooks = Hooks(
        alert=lambda body: handle_alert(deps, engine, body),
        tick=engine.tick,
        alert_token=settings.alert_token,
        tick_token=settings.tick_token,
    )
    wsgi = make_wsgi_app(bolt_app, hooks)
    return Runtime(settings, config, deps, engine, wsgi, bolt_app, warnings)
