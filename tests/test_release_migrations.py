"""Releases and rollbacks that know their migrations, end to end: signed Slack requests into the
real Bolt app (commands, the /deploy --migration form, buttons), the real run_v2 and
monitoring_v3 clients against the emulators, CI over HTTP, and sandbox time moved with `wait`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from bot.ports import ServiceRef
from bot.sandbox.console import Sandbox
from bot.sandbox.seed import alert_payload
from bot.sandbox.slack_payloads import input_values, view_submission
from bot.store import Operation
from bot.store_migrations import (
    candidates,
    record_revision_migration,
    revision_migration,
)
from tests.helpers import run, serving

SERVICE = "wa-backend"
BLUE = "wa-backend-00003"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"
FLAG = "FEATURE_FLAG_NEW_SCHEMA"
DROP = "ALTER TABLE reservas DROP COLUMN fecha;"
ADD = "ALTER TABLE reservas ADD COLUMN notes VARCHAR(500);"
COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    return sandbox


def latest(box: Sandbox, kind: str) -> Operation | None:
    from sqlalchemy import select

    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == kind)
        return session.scalars(query.order_by(Operation.created_at.desc())).first()


def card(box: Sandbox, kind: str = "release") -> str:
    operation = latest(box, kind)
    assert operation is not None
    message = box.emulator.slack.message(operation.channel, operation.message_ts)
    return json.dumps(message["blocks"], ensure_ascii=False)


def patch_bodies(box: Sandbox) -> list[dict[str, Any]]:
    return [c.body for c in box.emulator.router.calls.list("run.services.patch")]


def green_percents(body: dict[str, Any], green: str) -> list[int]:
    return [int(t.get("percent", 0)) for t in body.get("traffic", []) if t.get("revision") == green]


def ephemerals(box: Sandbox) -> list[str]:
    return [m["text"] for m in box.emulator.slack.messages() if m.get("ephemeral_to")]


def submit_form(box: Sandbox, sql: str, flag: str = "", user: str = "marta"):
    """The newest /deploy --migration form, sent as Slack sends a view_submission."""
    user_id = box.users[user]
    record = [v for v in box.emulator.slack.views() if v["user"] == user_id][-1]
    view = {**record["view"], "id": record["id"], "hash": record["hash"]}
    typed = {"sql": sql, **({"flag": flag} if flag else {})}
    body = view_submission(
        view, input_values(view, typed), user_id, user, box.emulator.slack.issue_trigger_id(user_id)
    )
    response = box.post(body)
    box.runtime.engine.wait_idle(timeout_s=60)
    return response


def backed_up(box: Sandbox) -> None:
    """Let the pre-deployment backup of a destructive release finish (Cloud SQL's 2 minutes)."""
    release = latest(box, "release")
    assert release is not None and release.state == "backing_up", "the backup comes first"
    run(box, "wait 3m")
    assert latest(box, "release").data["backup"]["status"] == "succeeded"


def ci(box: Sandbox, payload: Any, token: str | None = "", **headers: str):
    url = box.bot_url.replace("/slack/events", "/ci/releases")
    sent = {"Content-Type": "application/json", **headers}
    if token is not None:
        sent["Authorization"] = f"Bearer {token or box.alert_token}"
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = box.http.post(url, data=data, headers=sent, timeout=10)
    box.runtime.engine.wait_idle(timeout_s=60)
    return response


def green_env(box: Sandbox, green: str) -> dict[str, str]:
    ref = ServiceRef("runback-sandbox", "us-central1", SERVICE)
    revision = next(r for r in box.runtime.deps.cloudrun.list_revisions(ref) if r.name == green)
    return {v.name: v.value for v in revision.env}


def shipped(box: Sandbox, revision: str, verdict: str = "destructive", flag: str = FLAG) -> None:
    """History as a release of ``revision`` with that migration would have left it: its verdict
    recorded, and it served 100%."""
    store, now = box.runtime.deps.store, box.clock.now()
    statement = {
        "line": 1,
        "statement": DROP,
        "verdict": verdict,
        "rule": "drop_column" if verdict == "destructive" else "unrecognised",
        "data": {"table": "reservas", "column": "fecha", "kind": "DoStmt"},
        "warnings": [],
    }
    record_revision_migration(
        store,
        now,
        service=SERVICE,
        revision=revision,
        verdict=verdict,
        feature_flag=flag,
        dialect="postgres",
        source="ci",
        commit=COMMIT,
        statements=[statement],
        operation_id="",
    )
    store.serving.record_serving(SERVICE, revision, "served", now - timedelta(hours=1), "")


# -- releases -------------------------------------------------------------------------------------


def test_an_additive_migration_from_ci_releases_as_before(box: Sandbox) -> None:
    answer = ci(box, {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": ADD})
    assert answer.status_code == 201, answer.text
    assert answer.json()["verdict"] == "additive" and answer.json()["release"] is None
    assert patch_bodies(box) == [], "production is only registered"

    run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")
    operation = latest(box, "release")
    green = operation.to_revision
    assert operation.state == "judging" and serving(box) == {BLUE: 90, green: 10}
    assert "Additive" in card(box) or "additive" in card(box)
    assert f"commit `{COMMIT[:7]}`" in card(box)
    record = revision_migration(box.runtime.deps.store, SERVICE, green)
    assert record is not None and record.verdict == "additive"
    assert FLAG not in green_env(box, green)


def test_a_destructive_migration_waits_for_a_tech_lead_before_any_traffic(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --migration")
    [record] = box.emulator.slack.views()
    assert record["view"]["callback_id"] == "deploy_migration"

    refused = submit_form(box, DROP)  # destructive, and no flag named
    assert refused.status_code == 200
    errors = refused.json()
    assert errors["response_action"] == "errors" and "feature flag" in errors["errors"]["flag"]
    assert latest(box, "release") is None and candidates(box.runtime.deps.store) == []
    submit_form(box, DROP, flag="feature_flag_lower")
    assert latest(box, "release") is None and patch_bodies(box) == []

    assert submit_form(box, DROP, flag=FLAG).content == b""  # the ack closes the form
    operation = latest(box, "release")
    green = operation.to_revision
    assert operation.state == "backing_up", "the pre-deployment backup comes before green"
    assert patch_bodies(box) == [] and "Backing up `wa-backend-db`" in card(box)
    [backup] = box.emulator.router.calls.list("sql.backupRuns.insert")
    assert backup.body["description"] == f"Pre-deployment: release {green}"
    run(box, "wait 3m")  # the emulator's Cloud SQL takes 2 minutes for a backup
    operation = latest(box, "release")
    assert operation.state == "awaiting_approval" and operation.data["awaiting"] == "migration"
    assert operation.data["backup"]["status"] == "succeeded"
    assert f"/ops restore {SERVICE} {operation.data['backup']['backup_id']}" in card(box)
    assert serving(box) == {BLUE: 100}
    [deploy] = patch_bodies(box)
    assert green_percents(deploy, green) == [0], "green deployed at 0%, then nothing else"
    assert green_env(box, green)[FLAG] == "false", "the flag starts off"
    text = card(box)
    assert "drop_column" in text and "`fecha`" in text and "feature flag" in text
    assert f"/flag {SERVICE} {FLAG} on" in text and "backup" in text
    assert "Approve migration" in text

    run(box, "click Approve migration")  # marta asked: not hers to approve
    run(box, "as pablo", "click Approve migration")  # not a tech lead
    run(box, "wait 3m")
    assert latest(box, "release").state == "awaiting_approval" and serving(box) == {BLUE: 100}
    assert all(max(green_percents(b, green), default=0) == 0 for b in patch_bodies(box))

    run(box, "as luis", "click Approve migration")
    assert serving(box) == {BLUE: 90, green: 10}
    operation = latest(box, "release")
    assert operation.data["migration_approved_by"] == box.users["luis"]
    recorded = revision_migration(box.runtime.deps.store, SERVICE, green)
    assert recorded is not None and recorded.verdict == "destructive"
    assert recorded.feature_flag == FLAG and recorded.statements[0]["rule"] == "drop_column"
    actions = [a.action for a in box.runtime.deps.store.journal.audit()]
    assert "release.migration_approval_asked" in actions
    assert {"backup.started", "backup.succeeded"} <= set(actions)


def test_no_green_without_its_pre_deployment_backup(box: Sandbox) -> None:
    box.emulator.sqladmin.fail_next_operations("BACKUP_VOLUME", "disk quota exceeded")
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --migration")
    submit_form(box, DROP, flag=FLAG)
    assert latest(box, "release").state == "backing_up"
    run(box, "wait 3m")
    operation = latest(box, "release")
    assert operation.state == "failed" and operation.data["outcome"]["code"] == "backup_failed"
    assert patch_bodies(box) == [] and serving(box) == {BLUE: 100}
    text = card(box)
    assert "green was never deployed" in text and "disk quota exceeded" in text
    assert "backup.failed" in [a.action for a in box.runtime.deps.store.journal.audit()]
    assert run(box, f"/deploy {SERVICE} {IMAGE}")  # the service is free again


def test_an_on_call_rollback_during_the_backup_stops_the_release(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --migration")
    submit_form(box, DROP, flag=FLAG)
    assert latest(box, "release").state == "backing_up"
    run(box, "as ana", "in incidents", f"/rollback {SERVICE} checkout errors", "wait 1m")
    release = latest(box, "release")
    assert release.state == "cancelled" and release.data["outcome"]["code"] == "stood_aside"
    assert all(green_percents(b, release.to_revision) == [] for b in patch_bodies(box))
    assert serving(box) == {"wa-backend-00002": 100}, "on-call left blue (tests/test_on_call_*)"


def test_rejecting_the_migration_leaves_blue_alone(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --migration")
    submit_form(box, "DO $$ BEGIN PERFORM 1; END $$;", flag=FLAG)  # unknown is never a pass
    backed_up(box)
    operation = latest(box, "release")
    assert operation.state == "awaiting_approval" and operation.data["migration"]["verdict"] == (
        "unknown"
    )
    run(box, "as sofia", "click Reject")
    operation = latest(box, "release")
    assert operation.state == "rolled_back" and serving(box) == {BLUE: 100}
    assert operation.data["outcome"]["code"] == "migration_rejected"
    assert "rejected by" in card(box)


def test_a_ci_destructive_migration_needs_the_flag_at_deploy(box: Sandbox) -> None:
    payload = {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": DROP}
    assert ci(box, payload).status_code == 201
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")
    assert latest(box, "release") is None and patch_bodies(box) == []
    assert any("--flag FEATURE_FLAG_NAME" in n for n in ephemerals(box))
    run(box, f"/deploy {SERVICE} {IMAGE} --flag {FLAG}")
    backed_up(box)
    operation = latest(box, "release")
    assert operation.state == "awaiting_approval" and operation.data["migration"]["flag"] == FLAG
    assert serving(box) == {BLUE: 100}


# -- rollbacks ------------------------------------------------------------------------------------


def test_rollback_past_a_released_destructive_migration_needs_a_tech_lead(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --migration")
    submit_form(box, DROP, flag=FLAG)
    backed_up(box)
    green = latest(box, "release").to_revision
    run(box, "as luis", "click Approve migration", "wait 6m", "wait 6m", "click Approve 100%")
    run(box, "wait 7m")
    assert latest(box, "release").state == "succeeded" and serving(box) == {green: 100}
    patches_before = len(patch_bodies(box))

    run(box, "as ana", f"/rollback {SERVICE} errors after the release")
    operation = latest(box, "rollback")
    assert operation.state == "awaiting_approval" and not operation.emergency
    assert operation.to_revision == BLUE and serving(box) == {green: 100}
    assert len(patch_bodies(box)) == patches_before, "refused as an emergency: nothing moved"
    text = card(box, "rollback")
    assert "Not an emergency rollback" in text
    assert f"`{green}`" in text and "Drops column `fecha`" in text, "why old code would fail"
    # the flag is still off (green shipped with it off): turning it off is no way back
    assert f"/flag {SERVICE} {FLAG} off" not in text and "changes nothing" in text
    assert "Approve rolling back past the migration" in text
    refused = [
        a for a in box.runtime.deps.store.journal.audit() if a.action.endswith("as_emergency")
    ]
    assert refused and refused[-1].detail["past"] == [green]

    run(box, "click Approve")  # ana asked, and is no tech lead
    assert latest(box, "rollback").state == "awaiting_approval"
    run(box, "as sofia", "click Approve")
    assert latest(box, "rollback").state == "succeeded" and serving(box) == {BLUE: 100}


def test_a_tech_lead_on_call_cannot_approve_their_own_rollback_past_it(box: Sandbox) -> None:
    shipped(box, BLUE)
    run(box, "as luis", f"/rollback {SERVICE}")  # a tech lead: asked for, never self-approved
    assert latest(box, "rollback").state == "awaiting_approval"
    run(box, "click Approve")
    assert latest(box, "rollback").state == "awaiting_approval"
    assert any("another tech lead" in n for n in ephemerals(box))
    run(box, "as sofia", "click Approve")
    assert serving(box) == {"wa-backend-00002": 100}


def test_a_rollback_not_past_it_is_unaffected(box: Sandbox) -> None:
    shipped(box, "wa-backend-00002")  # the target itself shipped it: its code knows the schema
    run(box, "as ana", f"/rollback {SERVICE}")
    operation = latest(box, "rollback")
    assert operation.emergency and operation.state == "succeeded"
    assert serving(box) == {"wa-backend-00002": 100}
    assert "Not an emergency" not in card(box, "rollback")


def test_a_revision_that_never_served_ships_nothing(box: Sandbox) -> None:
    store, now = box.runtime.deps.store, box.clock.now()
    record_revision_migration(
        store, now, service=SERVICE, revision="wa-backend-00004-abc", verdict="destructive"
    )  # recorded at deploy, but its release was rolled back before 100%: blue served beside it
    run(box, "as ana", f"/rollback {SERVICE}")
    assert latest(box, "rollback").state == "succeeded"


def test_the_automatic_incident_rollback_asks_instead(box: Sandbox) -> None:
    shipped(box, BLUE)
    box.emulator.cloudrun.set_behaviour(BLUE, error_rate=0.07)
    run(box, "wait 9m")
    payload = alert_payload(box.emulator, SERVICE, "open", "0.alert-mig")
    assert box.post_alert(payload).status_code == 200
    box.runtime.engine.wait_idle(timeout_s=60)
    record = box.runtime.deps.store.incidents.open_incidents()[0]
    operation = box.runtime.deps.store.operations.operation(record.operation_id)
    assert operation is not None and operation.state == "awaiting_approval"
    assert serving(box) == {BLUE: 100}, "never silently past a destructive migration"
    incident = box.emulator.slack.message(record.channel, record.message_ts)
    text = json.dumps(incident["blocks"], ensure_ascii=False)
    assert "Rollback NOT started by itself" in text and "ways out that can be taken now" in text
    assert "Roll back" not in [
        e["text"]["text"]
        for b in incident["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
    ]
    timeline = [e.kind for e in box.runtime.deps.store.journal.timeline(record.id)]
    assert "rollback_asked_past_migration" in timeline

    run(box, "as luis", "click Approve")  # any tech lead: Runback asked, not a person
    assert serving(box) == {"wa-backend-00002": 100}
    assert box.runtime.deps.store.incidents.incident(record.id).state == "mitigated"


# -- CI ------------------------------------------------------------------------------------------


def test_ci_needs_its_token(box: Sandbox) -> None:
    payload = {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": ADD}
    assert ci(box, payload, token=None).status_code == 401
    assert ci(box, payload, token="wrong").status_code == 401
    url = box.bot_url.replace("/slack/events", "/ci/releases")
    in_query = box.http.post(url, params={"token": box.alert_token}, json=payload, timeout=10)
    assert in_query.status_code == 401, "only the Authorization header: queries are logged"
    assert candidates(box.runtime.deps.store) == []


@pytest.mark.parametrize(
    ("payload", "status", "says"),
    [
        (b"not json", 400, "not JSON"),
        ([1, 2], 400, "JSON object"),
        ({"service": SERVICE, "image": IMAGE, "commit": COMMIT}, 400, "migration_sql"),
        (
            {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": "", "x": 1},
            400,
            "x",
        ),
        ({"service": SERVICE, "image": IMAGE, "commit": 123, "migration_sql": ""}, 400, "commit"),
        (
            {"service": "wa-nope", "image": IMAGE, "commit": COMMIT, "migration_sql": ""},
            422,
            "nope",
        ),
        (
            {"service": SERVICE, "image": "<!channel>", "commit": COMMIT, "migration_sql": ""},
            422,
            "not a container image",
        ),
        (
            {
                "service": SERVICE,
                "image": "docker.io/evil/wa:1",
                "commit": COMMIT,
                "migration_sql": "",
            },
            422,
            "registry",
        ),
        (
            {
                "service": SERVICE,
                "image": IMAGE,
                "commit": COMMIT,
                "migration_sql": "",
                "feature_flag": "lower",
            },
            422,
            "feature flag",
        ),
        (
            {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": "x" * 300_000},
            400,
            "at most 200000 characters",  # MAX_SQL_CHARS, the one limit (tests/test_migration_*)
        ),
        (
            {
                "service": SERVICE,
                "image": IMAGE,
                "commit": COMMIT,
                "migration_sql": "x" * 1_400_000,
            },
            413,
            "too large",
        ),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "missing",
        "unknown-field",
        "wrong-type",
        "unknown-service",
        "bad-image",
        "registry",
        "bad-flag",
        "oversize",
        "oversize-body",
    ],
)
def test_bad_ci_payloads_change_nothing(box: Sandbox, payload: Any, status: int, says: str) -> None:
    answer = ci(box, payload)
    assert answer.status_code == status, answer.text
    assert says in answer.text
    assert candidates(box.runtime.deps.store) == [] and latest(box, "release") is None
    assert patch_bodies(box) == []


def test_ci_starts_the_staging_release_at_once(box: Sandbox) -> None:
    image = IMAGE.replace("wa-backend:", "wa-backend-staging:")
    payload = {
        "service": "wa-backend-staging",
        "image": image,
        "commit": COMMIT,
        "migration_sql": ADD,
    }
    answer = ci(box, payload)
    assert answer.status_code == 201, answer.text
    started = answer.json()["release"]
    assert started["started"] is True
    operation = box.runtime.deps.store.operations.operation(started["operation"])
    assert operation.state == "succeeded" and operation.requested_by == "CI"
    assert operation.channel == box.runtime.deps.config.channels.team.id
    assert serving(box, "wa-backend-staging") == {operation.to_revision: 100}
    assert operation.data["migration"]["source"] == "ci"
    assert operation.data["migration"]["commit"] == COMMIT
    assert "requested by CI" in card(box)


def test_ci_destructive_staging_release_waits_for_its_approval(box: Sandbox) -> None:
    payload = {
        "service": "wa-backend-staging",
        "image": IMAGE,
        "commit": COMMIT,
        "migration_sql": DROP,
    }
    answer = ci(box, payload)
    assert answer.json()["release"] == {"started": False, "why": "error.release.flag_missing"}
    assert latest(box, "release") is None
    answer = ci(box, {**payload, "feature_flag": FLAG})
    backed_up(box)
    operation = box.runtime.deps.store.operations.operation(answer.json()["release"]["operation"])
    assert operation.state == "awaiting_approval"
    assert serving(box, "wa-backend-staging") == {"wa-backend-staging-00003": 100}


def test_a_candidate_without_sql_is_a_release_without_migration(box: Sandbox) -> None:
    payload = {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": "-- none\n"}
    assert ci(box, payload).json()["verdict"] == "none"
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE}")
    green = latest(box, "release").to_revision
    assert serving(box) == {BLUE: 90, green: 10}
    assert revision_migration(box.runtime.deps.store, SERVICE, green).verdict == "none"


def test_a_flag_without_a_migration_is_bad_input(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --flag {FLAG}")
    assert latest(box, "release") is None and patch_bodies(box) == []
    assert any("no migration is registered" in n for n in ephemerals(box))
    run(box, f"/deploy {SERVICE} {IMAGE} --flag feature_flag_lower")
    assert any("--migration" in n for n in ephemerals(box)) and patch_bodies(box) == []


def test_the_form_is_not_opened_for_an_unknown_service(box: Sandbox) -> None:
    output = run(box, "as marta", f"/deploy wa-nope {IMAGE} --migration")
    assert "wa-backend-staging" in output and box.emulator.slack.views() == []


def test_sql_names_on_the_card_are_escaped(box: Sandbox) -> None:
    sql = 'ALTER TABLE "<!channel>" DROP COLUMN "<@U0LUIS>";'
    payload = {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": sql}
    assert ci(box, payload).json()["verdict"] == "destructive"
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --flag {FLAG}")
    text = card(box)
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text and "<@U0LUIS>" not in text


def test_an_incident_whose_rollback_past_it_is_rejected_says_nothing_moved(box: Sandbox) -> None:
    shipped(box, BLUE)
    box.emulator.cloudrun.set_behaviour(BLUE, error_rate=0.07)
    run(box, "wait 9m")
    assert box.post_alert(alert_payload(box.emulator, SERVICE, "open", "0.m2")).status_code == 200
    box.runtime.engine.wait_idle(timeout_s=60)
    run(box, "as luis", "click Reject")
    record = box.runtime.deps.store.incidents.open_incidents()[0]
    text = json.dumps(box.emulator.slack.message(record.channel, record.message_ts)["blocks"])
    assert "traffic did not move" in text and "Rollback triggered" not in text
    assert serving(box) == {BLUE: 100}


def test_green_turns_an_existing_flag_off_and_keeps_every_other_variable(box: Sandbox) -> None:
    env = {FLAG: "true", "LOG_LEVEL": "info", "DATABASE_URL": {"secret": "db-url", "version": "3"}}
    box.emulator.cloudrun.seed_service(
        "runback-sandbox",
        "us-central1",
        SERVICE,
        revisions=[
            {"name": "wa-backend-00002", "image": IMAGE.replace("v1.3.0", "v1.1.0"), "age_s": 9e4},
            {"name": BLUE, "image": IMAGE.replace("v1.3.0", "v1.2.0"), "age_s": 3600, "env": env},
        ],
    )
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --migration")
    submit_form(box, DROP, flag=FLAG)
    backed_up(box)
    green = latest(box, "release").to_revision
    assert green_env(box, green) == {FLAG: "false", "LOG_LEVEL": "info", "DATABASE_URL": ""}
    ref = ServiceRef("runback-sandbox", "us-central1", SERVICE)
    [secret] = [
        v
        for r in box.runtime.deps.cloudrun.list_revisions(ref)
        if r.name == green
        for v in r.env
        if v.name == "DATABASE_URL"
    ]
    assert secret.secret.endswith("db-url") and secret.secret_version == "3"


def test_an_expired_request_to_roll_back_past_it_is_said_on_the_incident(box: Sandbox) -> None:
    shipped(box, BLUE)
    box.emulator.cloudrun.set_behaviour(BLUE, error_rate=0.07)
    run(box, "wait 9m")
    assert box.post_alert(alert_payload(box.emulator, SERVICE, "open", "0.m3")).status_code == 200
    box.runtime.engine.wait_idle(timeout_s=60)
    run(box, "wait 31m")
    record = box.runtime.deps.store.incidents.open_incidents()[0]
    assert box.runtime.deps.store.operations.operation(record.operation_id).state == "expired"
    text = json.dumps(box.emulator.slack.message(record.channel, record.message_ts)["blocks"])
    assert "traffic did not move" in text and "expired" in text
    assert "rollback_expired" in [
        e.kind for e in box.runtime.deps.store.journal.timeline(record.id)
    ]


def test_the_records_work_on_postgresql(pg_sandbox: Sandbox) -> None:
    box = pg_sandbox
    payload = {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": DROP}
    assert ci(box, payload).status_code == 201
    run(box, "as marta", f"/deploy {SERVICE} {IMAGE} --flag {FLAG}")
    backed_up(box)
    green = latest(box, "release").to_revision
    recorded = revision_migration(box.runtime.deps.store, SERVICE, green)
    assert recorded is not None and recorded.statements[0]["data"]["column"] == "fecha"
    shipped(box, BLUE)
    run(box, "as ana", "click Roll back")  # the release goes back to blue: unaffected
    run(box, f"/rollback {SERVICE}")
    assert latest(box, "rollback").state == "awaiting_approval"
