"""Assembles the bot from app.yaml and the environment: the imperative shell's one constructor."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from bot.clock import SystemClock
from bot.config import Config
from bot.database import UNAVAILABLE
from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ports import Clock
from bot.render import Renderer, shared_renderer
from bot.settings import Settings
from bot.startup import StartupError, open_store
from bot.store import Store

log = logging.getLogger("runback.runtime")
__all__ = ["Runtime", "Settings", "StartupError", "build_runtime"]


# How long one warm-up step waits for a quiet moment before it goes ahead anyway.
WARM_UP_PATIENCE_S = 60.0


def _warm_adapter(adapter: Any) -> None:
    try:
        if hasattr(adapter, "warm_up"):
            adapter.warm_up()
    except Exception:  # a warm-up is best effort; the first real call retries
        log.warning("could not prepare %s ahead of time", type(adapter).__name__)


@dataclass
class Runtime:
    settings: Settings
    config: Config
    deps: Deps
    engine: Engine
    wsgi: Any
    bolt_app: Any
    warnings: list[str] = field(default_factory=list)  # app.yaml facts that fail on real GCP

    def warm_up(self, quiet_s: float = 0.0) -> None:
        """Build the Google clients and compile the templates and the first queries now, rather
        than on the first command that needs them. With ``quiet_s``, a step at a time, each once
        Runback has had no Slack request, answer or operation running for ``quiet_s``: the
        warm-up is seconds of CPU, and Python runs one thread at a time, so done during a burst
        of commands it made each ack wait its turn (the bench's ack p99 doubled)."""
        steps: list[Callable[[], object]] = [
            *self.deps.renderer.warm_up_steps(),
            lambda: self.deps.store.operations.lock_holder(""),
            self.check_user_groups,
            self.check_incidents_channel,
            *(
                partial(_warm_adapter, adapter)
                for adapter in (
                    self.deps.cloudrun,
                    self.deps.probe,
                    self.deps.metrics,
                    self.deps.audit_sink,
                )
            ),
        ]
        for step in steps:
            if quiet_s:
                self.engine.wait_quiet(quiet_s, timeout_s=WARM_UP_PATIENCE_S)
            step()

    def check_incidents_channel(self) -> bool | None:
        """Say loudly at start when Runback cannot post in the incidents channel."""
        channel = self.config.channels.incidents
        is_member = getattr(self.deps.chat, "is_member", None)
        if is_member is None:
            return None
        try:
            member: bool = is_member(channel.id)
        except Exception as error:  # ChatError: Slack's code says what to fix
            log.error("could not check #%s (%s): %s", channel.name, channel.id, error)
            return None
        if not member:
            log.error(
                "Runback is not a member of #%s (%s): type /invite @Runback there, or incident "
                "cards and alerts cannot be posted.",
                channel.name,
                channel.id,
            )
        return member

    def check_own_service(self) -> str:
        """On Cloud Run (``K_SERVICE`` set), read Runback's own service and say in one warning
        line when its CPU is throttled between requests: then Runback's work after an answer
        (the emergency PATCH, judgements, cards) waits for the next request. Returns the line
        ("" when there is nothing to say)."""
        from bot.gcp.metadata import MetadataServer, MetadataUnavailable, own_service
        from bot.ports import CloudRunError

        settings = self.settings
        if not settings.k_service:
            return ""
        try:
            ref = own_service(
                settings.k_service, settings.google_project, MetadataServer(settings.metadata_host)
            )
            state = self.deps.cloudrun.get_service(ref)
        except (MetadataUnavailable, CloudRunError) as error:
            log.warning("could not read Runback's own service %s: %s", settings.k_service, error)
            return ""
        if not state.cpu_throttled:
            return ""
        line = self.deps.renderer.text(
            "startup.cpu_throttled", service=ref.name, project=ref.project, region=ref.region
        )
        log.warning("%s", line)
        return line

    def check_user_groups(self) -> str:
        """Say loudly at start when roles held through Slack user groups cannot be counted."""
        handles = self.deps.group_handles()
        check = getattr(self.deps.directory, "check", None)
        if not handles or check is None:
            return ""
        problem: str = check()
        if problem:
            log.error(
                "Slack user groups cannot be read (%s; a free Slack plan has none): members of "
                "%s hold no role through them. Roles come only from the user ids in app.yaml; "
                "list the on-call engineers under roles.on_call.users.",
                problem,
                ", ".join(f"@{h}" for h in handles),
            )
        return problem


def _cloudrun(settings: Settings) -> Any:
    from bot.gcp.cloudrun import CloudRunAdmin

    return CloudRunAdmin(settings.emulator_host, retry_deadline_s=settings.retry_deadline_s)


def _cloudsql(settings: Settings) -> Any:
    from bot.gcp.cloudsql import CloudSqlAdmin

    return CloudSqlAdmin(settings.emulator_host, retry_deadline_s=settings.retry_deadline_s)


def _secrets(settings: Settings) -> Any:
    from bot.gcp.secrets import SecretManager

    return SecretManager(settings.emulator_host, retry_deadline_s=settings.retry_deadline_s)


def _audit_sink(settings: Settings, config: Config) -> Any:
    from bot.gcp.logs import CloudLoggingAudit

    project = settings.google_project or config.services[0].project
    return CloudLoggingAudit(project=project, emulator_host=settings.emulator_host)


def _metrics(settings: Settings) -> Any:
    from bot.gcp.monitoring import CloudMonitoring

    return CloudMonitoring(settings.emulator_grpc_host, retry_deadline_s=settings.retry_deadline_s)


def _probe(settings: Settings) -> Any:
    from bot.gcp.probe import HttpProbe

    return HttpProbe.for_emulator(settings.emulator_host)


def _service_config(settings: Settings) -> Any:
    from bot.gcp.service_config import HttpServiceConfig

    return HttpServiceConfig.for_emulator(settings.emulator_host)


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
    from bot.ops.ci_releases import MAX_CI_BODY, handle_ci_release
    from bot.slack.app import build_app
    from bot.slack.chat import SlackChat, SlackDirectory, make_client
    from bot.web import Hooks, make_wsgi_app

    client = make_client(settings.slack_bot_token, settings.slack_api_url)
    # The Google adapters are cheap to build: each imports its client library and connects
    # on first use, so a cold start's first ack never waits for them.
    audit_sink = _audit_sink(settings, config)
    deps = Deps(
        config=config,
        store=open_store(settings.database_url, upgrade=settings.db_upgrade),
        cloudrun=_cloudrun(settings),
        probe=_probe(settings),
        chat=SlackChat(client),
        directory=SlackDirectory(client),
        audit_sink=audit_sink,
        renderer=shared_renderer(config.locale),
        clock=clock or SystemClock(),
        metrics=_metrics(settings),
        logs=audit_sink,  # the same Cloud Logging client reads
        service_config=_service_config(settings),
        cloudsql=_cloudsql(settings),
        secrets=_secrets(settings),
    )
    warnings = config_warnings(config, deps.renderer)
    for warning in warnings:
        log.warning("%s", warning)
    engine = Engine(deps, lease_s=settings.lease_s)
    try:
        bolt_app = build_app(deps, engine, client, settings.slack_signing_secret)
    except Exception as error:  # Bolt checks the token with Slack (auth.test) as it starts
        deps.store.close()
        raise StartupError(_slack_problem(error, settings.slack_api_url)) from None
    hooks = Hooks(
        alert=lambda body: handle_alert(deps, engine, body),
        tick=lambda: engine.tick_in_request(settings.tick_deadline_s),
        alert_token=settings.alert_token,
        tick_token=settings.tick_token,
        first_sighting=deps.store.seen.first_sighting,
        health=lambda: writes_refused(deps.store),
        ci_release=lambda body: handle_ci_release(deps, engine, body),
        ci_token=settings.ci_token,
        ci_max_body=MAX_CI_BODY,
        activity=engine.track,
    )
    wsgi = make_wsgi_app(bolt_app, hooks, settings.slack_signing_secret)
    return Runtime(settings, config, deps, engine, wsgi, bolt_app, warnings)


def _slack_problem(error: Exception, api_url: str | None) -> str:
    where = api_url or "https://slack.com/api/"
    reason = str(getattr(error, "reason", "") or error).strip().splitlines()[0][:200]
    if "invalid_auth" in reason or "not_authed" in reason or "token_revoked" in reason:
        return f"Slack refused SLACK_BOT_TOKEN ({reason}); check the token"
    return f"cannot reach Slack at {where} ({reason}); check the network or SLACK_API_URL"


def writes_refused(store: Store) -> str | None:
    """What /healthz reports when the database stopped taking writes (None when it takes them)."""
    try:
        store.seen.check_writable(datetime.now(UTC))
    except UNAVAILABLE as error:
        log.error("the database refuses writes: %s", error)
        return "the database refuses writes (read-only or unreachable); see the logs"
    return None
