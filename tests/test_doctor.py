"""`python -m bot doctor` as a process against the emulators: every line, the exit code, and
the emulators' request logs show that it only read (no post, no PATCH, no log entry)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from google.cloud import monitoring_v3
from sqlalchemy import text

from bot.config import load_config
from bot.doctor import check_database
from bot.doctor import run as run_doctor
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import seed, seed_runback
from bot.store import Store
from tests.db import BACKENDS, open_store

REPO = Path(__file__).resolve().parents[1]
TOKEN = "t" * 40
PROJECT = "runback-sandbox"
# What the doctor may call: reads only. Anything else in a request log is a write.
READS = {
    "slack.auth.test",
    "slack.conversations.info",
    "slack.usergroups.list",
    "run.services.get",
    "service.healthz",
    "service.frontend",
    "monitoring.timeSeries.list",
    "monitoring.alertPolicies.list",
    "monitoring.notificationChannels.list",
    "logging.entries.list",
    "_emulator.idtoken",
    "resourcemanager.projects.testIamPermissions",
    "secretmanager.secrets.testIamPermissions",
    "metadata.project",
    "metadata.region",
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Emulator, Path]]:
    emulator = Emulator().start()
    try:
        seed(emulator, load_config(REPO / "app.yaml"))
        database = tmp_path / "runback.db"
        Store(f"sqlite:///{database}").close()
        yield emulator, tmp_path
    finally:
        emulator.stop()


def app_yaml(folder: Path, change: Any = None) -> Path:
    raw = yaml.safe_load((REPO / "app.yaml").read_text())
    if change:
        change(raw)
    path = folder / "app.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def doctor(
    emulator: Emulator, folder: Path, config: Path, in_process: bool = True, **env: str
) -> tuple[int, list[str]]:
    """`python -m bot doctor`'s exit code and lines: its code run here (its environment as
    the process's), or, ``in_process=False``, the command itself."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNBACK_", "SLACK_"))},
        **emulator.env(),
        "SLACK_BOT_TOKEN": "xoxb-sandbox",
        "SLACK_SIGNING_SECRET": "sandbox-signing-secret",
        "DATABASE_URL": f"sqlite:///{folder / 'runback.db'}",
        "RUNBACK_ALERT_TOKEN": TOKEN,
        "RUNBACK_TICK_TOKEN": TOKEN,
        "RUNBACK_CI_TOKEN": TOKEN,
        **env,
    }
    environment.pop("K_SERVICE", None)
    environment.update({k: v for k, v in env.items()})
    environment = {k: v for k, v in environment.items() if v}
    if in_process:  # the command's own code, without a Python start per check
        out, err = io.StringIO(), io.StringIO()
        with mock.patch.dict(os.environ, environment, clear=True), redirect_stderr(err):
            code = run_doctor(str(config), environment, out)
        assert not err.getvalue().strip(), err.getvalue()
        return code, out.getvalue().splitlines()
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "doctor"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert not done.stderr.strip(), done.stderr
    return done.returncode, done.stdout.splitlines()


def line(lines: list[str], *words: str) -> str:
    found = [text for text in lines if all(word in text for word in words)]
    assert len(found) == 1, f"{words} in:\n" + "\n".join(lines)
    return found[0]


def writes(emulator: Emulator) -> list[str]:
    return [call.api for call in emulator.router.calls.list() if call.api not in READS]


def test_a_good_configuration_is_all_green(world: tuple[Emulator, Path]) -> None:
    emulator, folder = world
    code, lines = doctor(emulator, folder, app_yaml(folder), in_process=False)  # the command
    assert code == 0, "\n".join(lines)
    checks, summary = lines[:-1], lines[-1]
    assert all(text.startswith("✅ ") for text in checks), "\n".join(lines)
    line(checks, "Slack token valid", "@runback")
    line(checks, "#incidents (C0INCIDENTS): Runback is a member")
    line(checks, "user groups readable: @oncall")
    for service in ("wa-backend", "wa-backend-staging"):
        line(checks, f"{service}: found in Cloud Run", f"{service}-00003 100%")
        line(checks, f"{service}: health check", "/health answered 200")
        line(checks, f"{service}: Cloud Monitoring readable")
        line(checks, f"{service}: 2 alert policies notify Runback")
        line(checks, f"{service}: Cloud Logging readable")
        carried = line(checks, f'{service}: alerts of "{service} error rate > 1%" carry')
        assert "service_name, revision_name (project_id, location aggregated away" in carried
    line(checks, "reachable and writable")
    line(checks, "RUNBACK_ALERT_TOKEN is set")
    line(checks, "RUNBACK_TICK_TOKEN is set")
    line(checks, "RUNBACK_CI_TOKEN is set")
    line(checks, "own service runback (runback-sandbox/us-central1): CPU always allocated")
    assert "0 warning(s)" in summary
    called = {call.api for call in emulator.router.calls.list()}
    assert {"slack.auth.test", "run.services.get", "monitoring.timeSeries.list"} <= called
    assert writes(emulator) == []


def test_faults_are_named_with_what_to_fix_and_nothing_is_written(
    world: tuple[Emulator, Path],
) -> None:
    emulator, folder = world
    emulator.slack.kick("C0INCIDENTS")
    emulator.slack.set_plan("free")

    def break_it(raw: dict[str, Any]) -> None:
        raw["services"][1]["health_path"] = "/healthz"
        ghost = {**raw["services"][0], "name": "wa-ghost"}
        raw["services"].append(ghost)

    code, lines = doctor(emulator, folder, app_yaml(folder, break_it), RUNBACK_TICK_TOKEN="")
    assert code == 1, "\n".join(lines)
    assert line(lines, "Runback is not a member").startswith("❌ ")
    assert "/invite @Runback in #incidents" in line(lines, "Runback is not a member")
    assert line(lines, "paid_teams_only", "a free Slack plan").startswith("⚠️ ")
    missing = line(lines, "wa-ghost: no such Cloud Run service")
    assert missing.startswith("❌ ") and "project runback-sandbox, region us-central1" in missing
    reserved = line(lines, "wa-backend-staging:", "/healthz", "Google's front end")
    assert reserved.startswith("❌ ")
    assert line(lines, "wa-backend: health check", "answered 200").startswith("✅ ")
    assert line(lines, "RUNBACK_TICK_TOKEN is not set").startswith("⚠️ ")
    assert lines[-1].startswith("3 problem(s)"), lines[-1]
    assert "service.frontend" in {call.api for call in emulator.router.calls.list()}
    assert writes(emulator) == []


def test_a_bad_slack_token_is_named_and_the_slack_checks_wait(
    world: tuple[Emulator, Path],
) -> None:
    emulator, folder = world
    code, lines = doctor(emulator, folder, app_yaml(folder), SLACK_BOT_TOKEN="xoxb-revoked")
    assert code == 1
    assert line(lines, "Slack refused SLACK_BOT_TOKEN (invalid_auth)").startswith("❌ ")
    assert line(lines, "need a valid Slack token").startswith("⚠️ ")
    assert not [text for text in lines if "#incidents" in text and "member" in text]
    assert line(lines, "wa-backend: found in Cloud Run").startswith("✅ ")
    assert writes(emulator) == []


def test_a_read_only_database_and_an_unreadable_app_yaml(world: tuple[Emulator, Path]) -> None:
    emulator, folder = world
    read_only = f"sqlite:///file:{folder / 'runback.db'}?mode=ro&uri=true"
    code, lines = doctor(emulator, folder, app_yaml(folder), DATABASE_URL=read_only)
    assert code == 1
    assert line(lines, "runback.db", "readonly").startswith("❌ ")
    broken = folder / "broken.yaml"
    broken.write_text("services: []\n")
    code, lines = doctor(emulator, folder, broken)
    assert code == 1 and lines[0].startswith("❌ app.yaml:")


def test_spanish_and_sqlite_on_cloud_run(world: tuple[Emulator, Path]) -> None:
    emulator, folder = world
    config = app_yaml(folder, lambda raw: raw.update(locale="es"))
    code, lines = doctor(emulator, folder, config, K_SERVICE="runback")
    assert code == 0, "\n".join(lines)
    assert line(lines, "SQLite sirve a una sola instancia").startswith("⚠️ ")
    assert line(lines, "token de Slack válido").startswith("✅ ")


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_database_check_writes_and_keeps_nothing(backend: str, tmp_path: Path) -> None:
    with open_store(backend, tmp_path) as store:
        url = store.engine.url.render_as_string(hide_password=False)
        before = seen_rows(store)
        findings = list(check_database(url, on_cloud_run=False))
        assert [(f.status, f.key) for f in findings] == [("ok", "database_ok")]
        assert seen_rows(store) == before


def seen_rows(store: Store) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM seen_requests")).scalar_one())


def test_permissions_name_the_role_to_grant(world: tuple[Emulator, Path]) -> None:
    emulator, folder = world
    # wa-backend's services.get is refused once; every Monitoring query is refused.
    emulator.router.faults.add(Fault(api="run.services.get", status=403, times=1))
    emulator.router.faults.add(Fault(api="monitoring.timeSeries.list", status=403, times=None))
    emulator.cloudrun.require_auth("wa-backend-staging")

    def authenticated(raw: dict[str, Any]) -> None:
        raw["services"][1]["requires_auth"] = True

    code, lines = doctor(emulator, folder, app_yaml(folder, authenticated))
    assert code == 1
    denied = line(lines, "wa-backend: Cloud Run refused")
    assert denied.startswith("❌ ") and "roles/run.developer" in denied
    monitoring = line(lines, "wa-backend-staging: Cloud Monitoring refused")
    assert monitoring.startswith("❌ ") and "roles/monitoring.viewer" in monitoring
    # The ID token reached the authenticated service: its health path answered.
    assert line(lines, "wa-backend-staging: health check", "answered 200").startswith("✅ ")
    assert writes(emulator) == []


# -- alert policies and Cloud Logging ------------------------------------------------------------


def calls(emulator: Emulator, api: str) -> list[Any]:
    return emulator.router.calls.list(api)


def test_alert_policies_and_logs_are_read_once_and_named(world: tuple[Emulator, Path]) -> None:
    emulator, folder = world
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 0, "\n".join(lines)
    for service in ("wa-backend", "wa-backend-staging"):
        policies = line(lines, f"{service}: 2 alert policies notify Runback")
        assert f"{service} error rate > 1%" in policies and f"{service} P95 > 2000 ms" in policies
        assert line(lines, f"{service}: Cloud Logging readable").startswith("✅ ")
    # Both services live in one project: its policies and channels are listed once.
    assert [c.body["name"] for c in calls(emulator, "monitoring.alertPolicies.list")] == [
        "projects/runback-sandbox"
    ]
    assert len(calls(emulator, "monitoring.notificationChannels.list")) == 1
    reads = calls(emulator, "logging.entries.list")
    assert len(reads) == 2 and all(
        r.body["resourceNames"] == ["projects/runback-sandbox"] for r in reads
    )
    assert 'resource.labels.service_name="wa-backend-staging"' in reads[1].body["filter"]
    assert writes(emulator) == []


def test_a_service_without_policies_is_a_warning_and_only_runback_s_webhook_counts(
    world: tuple[Emulator, Path],
) -> None:
    emulator, folder = world
    alerts = emulator.monitoring.alerts
    assert alerts.remove_policies(PROJECT, "wa-backend-staging") == 2
    email = email_channel(emulator)
    for policy in alerts.policies(PROJECT):  # wa-backend's error-rate policy e-mails only
        if "error rate" in policy.display_name:
            policy.notification_channels = [email]
            alerts.add_policy(PROJECT, policy)
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 0, "\n".join(lines)  # incidents can still be opened by hand: not a failure
    none = line(lines, "wa-backend-staging: no alert policy in project runback-sandbox")
    assert none.startswith("⚠️ ") and "incidents will not open automatically" in none
    one = line(lines, "wa-backend: 1 alert policy notifies Runback (wa-backend P95 > 2000 ms)")
    assert one.startswith("✅ ")
    assert "1 warning(s)" in lines[-1]


def test_policies_that_never_reach_runback_are_a_warning(world: tuple[Emulator, Path]) -> None:
    emulator, folder = world
    alerts = emulator.monitoring.alerts
    email = email_channel(emulator)
    for policy in alerts.policies(PROJECT):
        policy.notification_channels = [email]
        alerts.add_policy(PROJECT, policy)
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 0, "\n".join(lines)
    for service in ("wa-backend", "wa-backend-staging"):
        silent = line(lines, f"{service}: 2 alert policies", "none notifies Runback")
        assert silent.startswith("⚠️ ") and "/alerts/monitoring?token=" in silent


def email_channel(emulator: Emulator) -> str:
    channel = monitoring_v3.NotificationChannel(type_="email", labels={"email_address": "a@b.c"})
    return emulator.monitoring.alerts.add_channel(PROJECT, channel).name


def test_a_disabled_policy_and_a_webhook_without_its_token(world: tuple[Emulator, Path]) -> None:
    emulator, folder = world
    alerts = emulator.monitoring.alerts
    [channel] = alerts.channels(PROJECT)
    channel.labels["url"] = "https://runback.example.com/alerts/monitoring"
    alerts.add_channel(PROJECT, channel)
    for policy in alerts.policies(PROJECT):
        if "wa-backend-staging" in policy.display_name:
            policy.enabled = False
            alerts.add_policy(PROJECT, policy)
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 0, "\n".join(lines)
    disabled = line(lines, "wa-backend-staging: no enabled alert policy", "2 disabled")
    assert disabled.startswith("⚠️ ")
    untokened = line(lines, "wa-backend: the webhook of", "has no ?token=")
    assert untokened.startswith("⚠️ ") and "401" in untokened


def test_permission_denied_names_the_roles_and_outages_are_retried_then_named(
    world: tuple[Emulator, Path],
) -> None:
    emulator, folder = world
    add = emulator.router.faults.add
    add(Fault(api="monitoring.alertPolicies.list", status=403, times=None))
    add(Fault(api="logging.entries.list", status=403, times=1))  # wa-backend's read
    add(Fault(api="logging.entries.list", status=503, times=None))  # then Logging is down
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 1
    for service in ("wa-backend", "wa-backend-staging"):
        denied = line(lines, f"{service}: Cloud Monitoring refused the alert policies")
        assert (
            denied.startswith("❌ ")
            and "roles/monitoring.viewer on project runback-sandbox" in denied
        )
    logging = line(lines, "wa-backend: Cloud Logging refused")
    assert (
        logging.startswith("❌ ") and "roles/logging.viewer on project runback-sandbox" in logging
    )
    down = line(lines, "wa-backend-staging: cannot read Cloud Logging", "ServiceUnavailable")
    assert down.startswith("❌ ")
    assert len(calls(emulator, "monitoring.alertPolicies.list")) == 1  # not retried: a 403 stays
    assert len(calls(emulator, "logging.entries.list")) == 1 + 3  # the outage: three attempts
    assert lines[-1].startswith("4 problem(s)"), lines[-1]
    assert writes(emulator) == []


def test_a_brief_monitoring_outage_is_retried(world: tuple[Emulator, Path]) -> None:
    emulator, folder = world
    emulator.router.faults.add(Fault(api="monitoring.alertPolicies.list", status=503, times=2))
    emulator.router.faults.add(
        Fault(api="monitoring.notificationChannels.list", status=503, times=1)
    )
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 0, "\n".join(lines)
    assert line(lines, "wa-backend: 2 alert policies notify Runback").startswith("✅ ")
    assert len(calls(emulator, "monitoring.alertPolicies.list")) == 3
    assert len(calls(emulator, "monitoring.notificationChannels.list")) == 2


def test_runback_deployed_with_its_cpu_throttled_is_a_failure_with_the_fix(
    world: tuple[Emulator, Path],
) -> None:
    emulator, folder = world
    seed_runback(emulator, load_config(REPO / "app.yaml"), cpu_idle=True)
    code, lines = doctor(emulator, folder, app_yaml(folder), K_SERVICE="runback")
    assert code == 1, "\n".join(lines)
    throttled = line(lines, "Runback's own service runback", "CPU only during requests")
    assert throttled.startswith("❌ ")
    fix = "gcloud run services update runback --region us-central1 --no-cpu-throttling"
    assert fix + " --min-instances 1" in throttled
    assert writes(emulator) == []


def test_runback_not_found_where_it_was_looked_for_is_a_warning(
    world: tuple[Emulator, Path],
) -> None:
    emulator, folder = world
    code, lines = doctor(emulator, folder, app_yaml(folder), RUNBACK_SERVICE="runback-prod")
    assert code == 0, "\n".join(lines)
    missing = line(lines, "Runback's own Cloud Run service runback-prod is not in project")
    assert missing.startswith("⚠️ ") and "RUNBACK_REGION" in missing


def test_a_policy_whose_alerts_lose_the_service_label_is_a_warning(
    world: tuple[Emulator, Path],
) -> None:
    emulator, folder = world
    for policy in emulator.monitoring.alerts.policies(PROJECT):
        if policy.display_name.startswith("wa-backend P95"):
            threshold = policy.conditions[0].condition_threshold
            threshold.aggregations[0].group_by_fields = ["resource.label.revision_name"]
            emulator.monitoring.alerts.add_policy(PROJECT, policy)
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 0, "\n".join(lines)
    lost = line(lines, 'wa-backend: alerts of "wa-backend P95 > 2000 ms" will carry only')
    assert lost.startswith("⚠️ ") and "revision_name: without service_name" in lost
    assert "group the condition by resource.label.service_name" in lost


def test_an_internal_ingress_health_check_says_what_to_give_runback(
    world: tuple[Emulator, Path],
) -> None:
    emulator, folder = world
    emulator.cloudrun.set_ingress("wa-backend", "internal")
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 1, "\n".join(lines)
    blocked = line(lines, "wa-backend:", "/health:", "ingress is internal")
    assert blocked.startswith("❌ ") and "give Runback VPC egress (Direct VPC)" in blocked
    assert "reserved" not in blocked


def test_plan_upgrade_required_is_said_as_a_free_plan(world: tuple[Emulator, Path]) -> None:
    emulator, folder = world
    emulator.slack.set_plan("free", "plan_upgrade_required")
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 0, "\n".join(lines)
    assert line(lines, "plan_upgrade_required", "a free Slack plan").startswith("⚠️ ")
