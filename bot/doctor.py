"""python -m bot doctor: check a real configuration, change nothing, say what to fix.

Every check only reads: Slack ``auth.test``, ``conversations.info`` and ``usergroups.list``;
Cloud Run ``services.get``; one GET of each health path; Cloud Monitoring ``ListTimeSeries``,
``ListAlertPolicies`` and ``ListNotificationChannels`` (once per project); Cloud Logging
``entries.list`` (one entry per service); and the database in a transaction that is rolled
back. One line per check (✅ fine, ⚠️ works but needs attention, ❌ must be fixed); exit 1 when
any line is ❌.
"""

from __future__ import annotations

import html
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

from bot.config import Config, ConfigError, Role, ServiceConfig, load_config
from bot.doctor_database import check_database_permissions
from bot.policy.platform import health_path_reserved
from bot.ports import ServiceRef, ServiceState
from bot.render import Renderer

Status = Literal["ok", "warn", "fail"]
MARKS: dict[Status, str] = {"ok": "✅", "warn": "⚠️", "fail": "❌"}
RETRY_DEADLINE_S = 8.0  # a doctor answers in seconds; each Google call retries this long at most
METRICS_MINUTES = 10
MIN_TOKEN_LENGTH = 32
TOKENS = (
    ("RUNBACK_ALERT_TOKEN", "POST /alerts/monitoring"),
    ("RUNBACK_TICK_TOKEN", "POST /tasks/tick"),
    ("RUNBACK_CI_TOKEN", "POST /ci/releases"),
)


@dataclass(frozen=True)
class Finding:
    status: Status
    key: str  # under ``doctor.`` in templates/*/messages.yaml
    facts: Mapping[str, Any]


def ok(key: str, **facts: Any) -> Finding:
    return Finding("ok", key, facts)


def warn(key: str, **facts: Any) -> Finding:
    return Finding("warn", key, facts)


def fail(key: str, **facts: Any) -> Finding:
    return Finding("fail", key, facts)


def run(
    config_path: str | None, env: Mapping[str, str] | None = None, out: TextIO = sys.stdout
) -> int:
    env = os.environ if env is None else env
    path = config_path or env.get("RUNBACK_CONFIG") or "app.yaml"
    findings: list[Finding] = []
    try:
        config: Config | None = load_config(path)
        checks = check_all(config, path, env)  # type: ignore[arg-type]
    except ConfigError as error:
        config = None
        checks = iter([fail("config_bad", error=str(error))])
    renderer = Renderer(config.locale if config else "en")

    def say(finding: Finding) -> None:
        findings.append(finding)
        text = html.unescape(renderer.text(f"doctor.{finding.key}", **finding.facts))
        out.write(f"{MARKS[finding.status]} {text}\n")
        out.flush()

    for finding in checks:
        say(finding)
    failures = sum(f.status == "fail" for f in findings)
    warnings = sum(f.status == "warn" for f in findings)
    summary = "doctor.summary_bad" if failures else "doctor.summary_ok"
    out.write(html.unescape(renderer.text(summary, failures=failures, warnings=warnings)) + "\n")
    return 1 if failures else 0


def check_all(config: Config, path: str, env: Mapping[str, str]) -> Iterator[Finding]:
    yield ok(
        "config_ok",
        path=path,
        services=len(config.services),
        channel=config.channels.incidents.name,
    )
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        if not env.get(name):
            yield fail("env_missing", name=name)
    yield from check_database(
        env.get("DATABASE_URL") or "sqlite:///runback.db", on_cloud_run=bool(env.get("K_SERVICE"))
    )
    if env.get("SLACK_BOT_TOKEN"):
        yield from check_slack(config, env["SLACK_BOT_TOKEN"], env.get("SLACK_API_URL") or None)
    google = Google(env.get("RUNBACK_EMULATOR_HOST") or None, env.get("RUNBACK_EMULATOR_GRPC_HOST"))
    credentials = check_google_credentials(google)
    if credentials is not None:
        yield credentials
    if credentials is None or credentials.status != "fail":
        for service in config.services:
            yield from check_service(config, service, google)
        yield from check_own_service(config, env, google)
    yield from check_tokens(env)


# -- the database ------------------------------------------------------------------------------


def check_database(url: str, on_cloud_run: bool) -> Iterator[Finding]:
    """``on_cloud_run``: K_SERVICE is set (Cloud Run sets it), where SQLite is a mistake."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError:
        yield fail("database_bad", url="DATABASE_URL", problem="not a database URL")
        return
    shown = parsed.render_as_string(hide_password=True)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and (parsed.database in (None, "", ":memory:")):
        yield fail("database_bad", url=shown, problem="an in-memory database forgets everything")
        return
    database = str(parsed.database)
    if sqlite and parsed.query.get("uri") and database.startswith("file:"):
        database = database.removeprefix("file:").split("?")[0]  # sqlite:///file:PATH?mode=ro
    if sqlite and not Path(database).exists():
        # Connecting would create the file: say what serve will do instead.
        folder = Path(database).resolve().parent
        if folder.is_dir() and os.access(folder, os.W_OK):
            yield warn("database_no_file", url=shown)
        else:
            yield fail("database_bad", url=shown, problem=f"cannot create a file in {folder}")
        return
    try:
        yield _database_writable(url, shown)
    except (SQLAlchemyError, ImportError) as error:
        yield fail("database_bad", url=shown, problem=_first_line(error))
    if sqlite and on_cloud_run:
        yield warn("database_sqlite", url=shown)


def _database_writable(url: str, shown: str) -> Finding:
    """Insert one row and roll it back: proves writes are accepted and keeps nothing."""
    from sqlalchemy.orm import Session

    from bot.database import make_engine
    from bot.schema import HEAD, REVISIONS, SchemaError, found_revision
    from bot.store import SeenRequest

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            try:
                found = found_revision(connection)
            except SchemaError as error:
                return fail("database_bad", url=shown, problem=str(error))
            if found.revision is None:
                return warn("database_new", url=shown)
            if found.revision not in REVISIONS:
                return fail("database_newer", url=shown, revision=found.revision, head=HEAD)
            if found.revision != HEAD:
                return fail("database_behind", url=shown, revision=found.revision, head=HEAD)
            with Session(connection) as session, session.begin() as transaction:
                session.add(SeenRequest(key="doctor:write-check", expires_at=datetime.now(UTC)))
                session.flush()
                transaction.rollback()
    finally:
        engine.dispose()
    return ok("database_ok", url=shown)


def _first_line(error: BaseException) -> str:
    cause = str(getattr(error, "orig", None) or error).strip()
    lines = [line.strip() for line in cause.splitlines() if line.strip()]
    fatal = next((line for line in lines if "FATAL" in line), None)
    return (fatal or (lines[0] if lines else type(error).__name__))[:300]


# -- Slack -------------------------------------------------------------------------------------


def check_slack(config: Config, token: str, api_url: str | None) -> Iterator[Finding]:
    from slack_sdk.errors import SlackApiError

    from bot.slack.chat import make_client

    client = make_client(token, api_url)
    try:
        identity = client.auth_test()
    except SlackApiError as error:
        yield fail("slack_bad", error=str(error.response.get("error") or "unknown"))
        yield warn("slack_skipped")
        return
    except Exception as error:  # network: refused, DNS, TLS, timeout
        where = api_url or "https://slack.com/api/"
        yield fail("slack_unreachable", url=where, error=_first_line(error))
        yield warn("slack_skipped")
        return
    yield ok("slack_ok", user=identity.get("user"), team=identity.get("team"))
    yield _check_channel(client, config)
    yield from _check_groups(client, config)


def _slack_error(error: Exception) -> str:
    from slack_sdk.errors import SlackApiError

    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or "unknown")
    return _first_line(error)


def _check_channel(client: Any, config: Config) -> Finding:
    channel = config.channels.incidents
    facts = {"name": channel.name, "id": channel.id}
    try:
        answer = client.conversations_info(channel=channel.id)
    except Exception as error:
        return fail("channel_bad", error=_slack_error(error), **facts)
    if not (answer.get("channel") or {}).get("is_member"):
        return fail("channel_not_member", **facts)
    return ok("channel_ok", **facts)


def _check_groups(client: Any, config: Config) -> Iterator[Finding]:
    handles = sorted({h for role in Role for h in config.roles.members(role).groups})
    if not handles:
        return
    shown = ", ".join(f"@{h}" for h in handles)
    try:
        answer = client.usergroups_list(include_users=True)
    except Exception as error:  # free plans answer paid_teams_only (grafana/oncall#4793)
        from bot.slack.chat import PAID_PLAN_ERRORS

        problem = _slack_error(error)
        yield warn("groups_bad", error=problem, paid=problem in PAID_PLAN_ERRORS, handles=shown)
        return
    known = {str(group.get("handle")) for group in answer.get("usergroups") or []}
    missing = [h for h in handles if h not in known]
    for handle in missing:
        yield warn("groups_missing", handle=handle)
    found = [f"@{h}" for h in handles if h in known]
    if found:
        yield ok("groups_ok", handles=", ".join(found))


# -- Google Cloud ------------------------------------------------------------------------------


class Google:
    """The read-only Google adapters, built on first use (and only once)."""

    def __init__(self, emulator_host: str | None, emulator_grpc_host: str | None) -> None:
        self.emulator_host = emulator_host
        self.emulator_grpc_host = emulator_grpc_host
        self._cloudrun: Any = None
        self._metrics: Any = None
        self._probe: Any = None
        self._logs: Any = None
        self._alerts: Any = None
        self._by_project: dict[tuple[str, str], Any] = {}

    @property
    def cloudrun(self) -> Any:
        if self._cloudrun is None:
            from bot.gcp.cloudrun import CloudRunAdmin

            self._cloudrun = CloudRunAdmin(self.emulator_host, retry_deadline_s=RETRY_DEADLINE_S)
        return self._cloudrun

    @property
    def metrics(self) -> Any:
        if self._metrics is None:
            from bot.gcp.monitoring import CloudMonitoring

            self._metrics = CloudMonitoring(
                self.emulator_grpc_host, retry_deadline_s=RETRY_DEADLINE_S
            )
        return self._metrics

    def alert_policies(self, project: str) -> list[Any]:
        """The project's alert policies, read once. Raises MetricsError."""
        return self._once("policies", project, lambda: self._alert_reader.policies(project))

    def notification_channels(self, project: str) -> dict[str, Any]:
        """The project's notification channels by name, read once. Raises MetricsError."""
        return self._once("channels", project, lambda: self._alert_reader.channels(project))

    def _once(self, what: str, project: str, read: Callable[[], Any]) -> Any:
        key = (what, project)
        if key not in self._by_project:
            try:
                self._by_project[key] = read()
            except Exception as error:  # remembered: the next service of the project says it too
                self._by_project[key] = error
        found = self._by_project[key]
        if isinstance(found, Exception):
            raise found
        return found

    @property
    def _alert_reader(self) -> Any:
        if self._alerts is None:
            from bot.gcp.alert_policies import CloudAlertPolicies

            self._alerts = CloudAlertPolicies(
                self.emulator_grpc_host, retry_deadline_s=RETRY_DEADLINE_S
            )
        return self._alerts

    def logs(self, project: str) -> Any:
        """A Cloud Logging reader (its calls name the project they read)."""
        if self._logs is None:
            from bot.gcp.logs import CloudLoggingAudit

            self._logs = CloudLoggingAudit(project, self.emulator_host)
        return self._logs

    @property
    def probe(self) -> Any:
        if self._probe is None:
            from bot.gcp.probe import HttpProbe

            self._probe = HttpProbe.for_emulator(self.emulator_host)
        return self._probe


def check_google_credentials(adapters: Google) -> Finding | None:
    """Application Default Credentials: the service account on Cloud Run, ``gcloud auth
    application-default login`` elsewhere (the emulators need none)."""
    if adapters.emulator_host:
        return None
    import google.auth
    from google.auth.exceptions import GoogleAuthError

    try:
        credentials, project = google.auth.default()
    except GoogleAuthError as error:
        return fail("google_bad", error=_first_line(error))
    who = getattr(credentials, "service_account_email", None) or type(credentials).__name__
    return ok("google_ok", who=who, project=project or "-")


def check_service(config: Config, service: ServiceConfig, google: Google) -> Iterator[Finding]:
    from bot.ports import CloudRunError

    ref = ServiceRef(service.project, service.region, service.name)
    facts = {"service": service.name, "project": service.project, "region": service.region}
    try:
        state = google.cloudrun.get_service(ref)
    except CloudRunError as error:
        if error.reason == "not_found":
            yield fail("service_missing", **facts)
        elif error.reason == "permission_denied":
            yield fail("service_denied", **facts)
        else:
            yield fail("service_bad", error=str(error)[:300], **facts)
        return
    serving = state.serving()
    shown = ", ".join(f"{name} {percent}%" for name, percent in sorted(serving.items()))
    yield ok("service_ok", serving=shown or "-", **facts)
    yield check_health(config, service, state, google)
    if serving:
        yield check_monitoring(ref, max(serving, key=lambda name: serving[name]), google)
    yield check_alert_policies(ref, google)
    yield from check_alert_labels(ref, google)
    yield check_logging(ref, google)
    yield from check_database_permissions(service, google.emulator_host, ok, fail)


def check_health(
    config: Config, service: ServiceConfig, state: ServiceState, google: Google
) -> Finding:
    base = service.url or state.uri
    url = base.rstrip("/") + service.health_path
    facts = {"service": service.name, "url": url, "path": service.health_path}
    audience = state.uri.rstrip("/") if service.requires_auth else None
    timeout = config.rollback.health_check_timeout_s
    result = google.probe.get(url, timeout, audience=audience)
    if result.problem == "reserved_path":
        return fail("health_reserved", **facts)
    if result.problem == "ingress_internal":
        return fail("health_ingress", **facts)
    if result.problem == "invoker_denied":
        return fail("health_denied", **facts)
    if result.problem == "no_id_token":
        return fail("health_no_token", detail=result.detail, **facts)
    if result.status == 404:
        return fail("health_not_found", **facts)
    reserved = health_path_reserved(service.health_path) and not service.url
    if reserved and not result.ok:
        return fail("health_reserved", **facts)
    if not result.ok:
        return warn("health_unhealthy", status=result.status, detail=result.detail, **facts)
    if reserved:  # answered today, but Google reserves paths ending in z on *.run.app
        return warn("health_reserved_risk", **facts)
    return ok("health_ok", status=result.status, **facts)


def check_monitoring(ref: ServiceRef, revision: str, google: Google) -> Finding:
    from bot.ports import MetricsError

    end = datetime.now(UTC)
    start = end - timedelta(minutes=METRICS_MINUTES)
    facts = {"service": ref.name, "project": ref.project}
    try:
        metrics = google.metrics.revision_metrics(ref, revision, start, end)
    except MetricsError as error:
        if error.reason == "permission_denied":
            return fail("monitoring_denied", **facts)
        return fail("monitoring_bad", error=str(error)[:300], **facts)
    return ok(
        "monitoring_ok",
        requests=metrics.requests,
        revision=revision,
        minutes=METRICS_MINUTES,
        **facts,
    )


def check_alert_policies(ref: ServiceRef, google: Google) -> Finding:
    """Enabled policies naming the service, and whether one of them notifies Runback."""
    from bot.gcp.alert_policies import watches, webhook_problem
    from bot.ports import MetricsError

    facts = {"service": ref.name, "project": ref.project}
    try:
        mine = [p for p in google.alert_policies(ref.project) if watches(p, ref.name)]
        enabled = [p for p in mine if p.enabled]
        if not enabled:
            return warn("alerts_none", disabled=len(mine), **facts)
        channels = google.notification_channels(ref.project)
    except MetricsError as error:
        if error.reason == "permission_denied":
            return fail("alerts_denied", **facts)
        return fail("alerts_bad", error=str(error)[:300], **facts)

    def reaches_runback(policy: Any) -> bool:
        return any(problem(name) is None for name in policy.notification_channels)

    def problem(name: str) -> str | None:
        return webhook_problem(channels[name]) if name in channels else "not_runback"

    reaching = [p for p in enabled if reaches_runback(p)]
    if reaching:
        names = ", ".join(sorted(p.display_name for p in reaching))
        return ok("alerts_ok", count=len(reaching), names=names, **facts)
    names = ", ".join(sorted(p.display_name for p in enabled))
    if any(problem(c) == "no_token" for p in enabled for c in p.notification_channels):
        return warn("alerts_webhook_no_token", names=names, **facts)
    return warn("alerts_no_webhook", count=len(enabled), names=names, **facts)


def check_alert_labels(ref: ServiceRef, google: Google) -> Iterator[Finding]:
    """Per enabled policy naming the service: which resource labels its alerts will carry
    (its aggregation's groupByFields), and whether Runback can tell the service from them."""
    from bot.gcp.alert_policies import watches
    from bot.ports import MetricsError

    try:
        mine = [p for p in google.alert_policies(ref.project) if watches(p, ref.name)]
    except MetricsError:
        return  # check_alert_policies said it
    for policy in (p for p in mine if p.enabled):
        facts = {"service": ref.name, "policy": policy.display_name}
        if policy.alert_labels is None:
            yield warn("alert_labels_unknown", **facts)
            continue
        labels = ", ".join(policy.alert_labels) or "-"
        if "service_name" not in policy.alert_labels:
            yield warn("alert_labels_no_service", labels=labels, **facts)
        else:
            missing = [x for x in ("project_id", "location") if x not in policy.alert_labels]
            yield ok("alert_labels_ok", labels=labels, missing=", ".join(missing), **facts)


def check_logging(ref: ServiceRef, google: Google) -> Finding:
    """One entry of the service's own logs: the postmortem reads them there."""
    from bot.gcp.logs import LogsUnavailable

    facts = {"service": ref.name, "project": ref.project}
    query = f'resource.type="cloud_run_revision" AND resource.labels.service_name="{ref.name}"'
    try:
        google.logs(ref.project).list_entries(query, max_results=1, project=ref.project)
    except LogsUnavailable as error:
        if error.reason == "permission_denied":
            return fail("logging_denied", **facts)
        return fail("logging_bad", error=str(error)[:300], **facts)
    return ok("logging_ok", **facts)


# -- Runback's own Cloud Run service ------------------------------------------------------------


def own_service_candidates(config: Config, env: Mapping[str, str]) -> list[ServiceRef]:
    """Where Runback's own service may be: ``K_SERVICE`` (on Cloud Run) or ``RUNBACK_SERVICE``
    (default ``runback``, the name docs/deploying.md gives it); in ``GOOGLE_CLOUD_PROJECT``
    (else the metadata server's project, else the first service's); in ``RUNBACK_REGION``, else
    the metadata server's region, else each managed service's region in turn."""
    from bot.gcp.metadata import MetadataServer, MetadataUnavailable

    name = env.get("K_SERVICE") or env.get("RUNBACK_SERVICE") or "runback"
    metadata = MetadataServer(env.get("GCE_METADATA_HOST") or "metadata.google.internal")
    project = env.get("GOOGLE_CLOUD_PROJECT") or ""
    regions = [env["RUNBACK_REGION"]] if env.get("RUNBACK_REGION") else []
    try:
        project = project or metadata.project()
        regions = regions or [metadata.region()]
    except MetadataUnavailable:
        pass  # not on Google Cloud: guess from app.yaml
    project = project or config.services[0].project
    regions = regions or list(dict.fromkeys(s.region for s in config.services))
    return [ServiceRef(project, region, name) for region in regions]


def check_own_service(config: Config, env: Mapping[str, str], google: Google) -> Iterator[Finding]:
    """Runback's own service: CPU always allocated (else its work after an answer waits for
    the next request) and a minimum instance (else a cold start eats Slack's 3 seconds)."""
    from bot.ports import CloudRunError

    candidates = own_service_candidates(config, env)
    for ref in candidates:
        try:
            state = google.cloudrun.get_service(ref)
        except CloudRunError:
            continue
        facts = {"service": ref.name, "project": ref.project, "region": ref.region}
        if state.cpu_throttled:
            yield fail("own_cpu_throttled", **facts)
        else:
            yield ok("own_cpu_ok", **facts)
        if state.min_instances < 1:
            yield warn("own_no_min_instances", **facts)
        return
    regions = ", ".join(ref.region for ref in candidates)
    shown = candidates[0]
    yield warn("own_missing", service=shown.name, project=shown.project, regions=regions)


# -- the endpoints' tokens ---------------------------------------------------------------------


def check_tokens(env: Mapping[str, str]) -> Iterator[Finding]:
    for name, endpoint in TOKENS:
        value = env.get(name) or ""
        if not value:
            yield warn("token_missing", name=name, endpoint=endpoint)
        elif len(value) < MIN_TOKEN_LENGTH:
            yield warn("token_short", name=name, length=len(value))
        else:
            yield ok("token_ok", name=name, endpoint=endpoint)
