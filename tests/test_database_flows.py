"""/ops backup, /ops backups and /ops restore end to end: signed Slack requests through Bolt, the
real sqladmin_v1beta4, secretmanager_v1 and run_v2 clients against the emulators, sandbox time
moved on with `wait` (no scheduler: nothing happens between lines)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.ops.backups import default_description, newest_backup_age, take_backup
from bot.ops.restore.states import RestoreData
from bot.ops.restore.view import STEP_NAMES
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.sqladmin import FIRST_RUN_ID
from bot.sandbox.seed import SAMPLE_PASSWORD
from bot.store import Operation
from tests.conftest import sandbox_config
from tests.helpers import run, serving

SERVICE = "wa-backend"
BLUE = "wa-backend-00003"
PROJECT = "runback-sandbox"
NEWEST = str(FIRST_RUN_ID + 3)  # wa-backend-db's newest automated backup in the sandbox


@pytest.fixture
def box(caplog: pytest.LogCaptureFixture) -> Iterator[Sandbox]:
    caplog.set_level(logging.DEBUG)
    sandbox = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)
    try:
        yield sandbox
    finally:
        sandbox.close()


def latest(box: Sandbox, kind: str) -> Operation:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == kind)
        found = session.scalars(query.order_by(Operation.created_at.desc())).first()
        assert found is not None
        return found


def card(box: Sandbox, kind: str) -> str:
    operation = latest(box, kind)
    message = box.emulator.slack.message(operation.channel, operation.message_ts)
    return json.dumps(message["blocks"], ensure_ascii=False)


def ephemerals(box: Sandbox) -> list[str]:
    return [m["text"] for m in box.emulator.slack.messages() if m.get("ephemeral_to")]


def calls(box: Sandbox, api: str) -> int:
    return len(box.emulator.router.calls.list(api))


def audit(box: Sandbox) -> list[str]:
    return [record.action for record in box.runtime.deps.store.journal.audit()]


def assert_no_credentials(box: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    """The DATABASE_URL's password never reaches Slack, Runback's logs, the audit trail or
    Cloud Logging (the emulators' request log holds what Google itself would see)."""
    slack = [c for c in box.emulator.router.calls.list() if c.api.startswith("slack.")]
    assert slack, "Slack was told something"
    assert SAMPLE_PASSWORD not in json.dumps([c.body for c in slack], default=str)
    assert SAMPLE_PASSWORD not in json.dumps(box.emulator.slack.messages(), default=str)
    assert SAMPLE_PASSWORD not in caplog.text
    records = box.runtime.deps.store.journal.audit()
    assert SAMPLE_PASSWORD not in json.dumps([r.detail for r in records], default=str)
    assert SAMPLE_PASSWORD not in json.dumps(box.emulator.logging.entries(), default=str)
    with box.runtime.deps.store.session() as session:
        stored = [o.data for o in session.scalars(select(Operation))]
    assert SAMPLE_PASSWORD not in json.dumps(stored, default=str)


# -- /ops backup, /ops backups ----------------------------------------------------------------


def test_an_on_demand_backup_is_waited_for_and_reported_with_its_id(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    out = run(box, "as marta", "/ops backup wa-backend before the orders migration")
    assert "Backing up" in out and "PENDING" in out
    run(box, "wait 1m")
    assert "RUNNING" in card(box, "backup")
    out = run(box, "wait 2m")
    backup_id = str(FIRST_RUN_ID + 7)
    assert f"Backup `{backup_id}` of `wa-backend-db` is done" in out
    assert f"/ops restore wa-backend {backup_id}" in card(box, "backup")
    [newest, *_] = box.emulator.sqladmin.backup_runs(PROJECT, "wa-backend-db")
    assert newest == {
        "id": backup_id,
        "type": "ON_DEMAND",
        "status": "SUCCESSFUL",
        "description": "before the orders migration",
    }
    assert calls(box, "sql.backupRuns.insert") == 1
    actions = audit(box)
    assert {"backup.requested", "backup.started", "backup.succeeded"} <= set(actions)
    assert latest(box, "backup").state == "succeeded"
    assert_no_credentials(box, caplog)


def test_the_default_description_says_pre_deployment_and_an_instance_works_too(
    box: Sandbox,
) -> None:
    run(box, "as marta", "/ops backup wa-backend-staging-db", "wait 3m")
    [newest, *_] = box.emulator.sqladmin.backup_runs(PROJECT, "wa-backend-staging-db")
    assert newest["description"] == "Pre-deployment: /ops backup by U0MARTA"
    assert latest(box, "backup").service == "wa-backend-staging"


def test_a_developer_may_not_take_a_backup_and_a_typo_is_named(box: Sandbox) -> None:
    run(box, "as pablo", "/ops backup wa-backend")
    run(box, "/ops backup wa-backnd")
    usage = run(box, "/ops backup")
    notes = ephemerals(box)
    assert any("*senior developer* role" in n for n in notes)
    assert any("`wa-backnd` is neither a service nor" in n and "`wa-backend`" in n for n in notes)
    assert "Usage: `/ops backup SERVICE|INSTANCE" in usage
    assert calls(box, "sql.backupRuns.insert") == 0
    assert "backup.refused" in audit(box)


def test_a_failed_backup_says_so(box: Sandbox) -> None:
    box.emulator.sqladmin.fail_next_operations("BACKUP_VOLUME", "disk quota exceeded")
    out = run(box, "as marta", "/ops backup wa-backend", "wait 3m")
    assert "The backup failed" in out and "disk quota exceeded" in out
    assert latest(box, "backup").state == "failed" and "backup.failed" in audit(box)


def test_a_backup_survives_cloud_sql_being_briefly_unreachable(box: Sandbox) -> None:
    run(box, "as marta", "/ops backup wa-backend")
    run(box, "fault sql.operations.get 503 20")  # more than the adapter's retries
    # one poll falls due (time passes poll by poll; sandbox_config polls every 30 s)
    out = run(box, f"wait {box.config.backups.poll_interval_s:g}s")
    assert "did not answer the last check" in out
    box.emulator.router.faults.clear()
    assert "is done" in run(box, "wait 3m")


def test_recent_backups_and_a_warning_when_the_newest_good_one_is_old(box: Sandbox) -> None:
    out = run(box, "as pablo", "/ops backups wa-backend")  # reading needs no role
    assert "The newest successful backup is 6h old" in out
    assert out.count("automated · successful") == 3
    box.emulator.sqladmin.seed_instance(
        PROJECT,
        "wa-backend-db",
        backups=[
            {"age_s": 30 * 3600, "type": "AUTOMATED"},
            {"age_s": 3600, "type": "ON_DEMAND", "status": "FAILED", "description": "x"},
        ],
    )
    age = newest_backup_age(box.runtime.deps, SERVICE)
    assert age is not None and 29.9 * 3600 <= age.total_seconds() < 30.1 * 3600  # from its end
    out = run(box, "/ops backups wa-backend-db")
    assert "⚠️ The newest successful backup is *30h old*, older than 24 hours" in out
    assert "on demand · failed · " in out and "m ago · x" in out


def test_backups_when_cloud_sql_refuses(box: Sandbox) -> None:
    run(box, "fault sql.backupRuns.list 403", "/ops backups wa-backend")
    assert any("permission denied" in n and "roles/cloudsql" in n for n in ephemerals(box))


def test_take_backup_is_what_a_release_calls_before_green() -> None:
    config = sandbox_config()
    backups = config.backups.model_copy(update={"poll_interval_s": 0.02})
    box = Sandbox(config.model_copy(update={"backups": backups}), scheduler=False)
    try:
        box.emulator.sqladmin.set_durations(BACKUP_VOLUME=0.3)
        deps = box.runtime.deps
        description = default_description(deps, "release wa-backend-00004")
        backup_id = take_backup(deps, SERVICE, description, operation_id="rel-1")
        [newest, *_] = box.emulator.sqladmin.backup_runs(PROJECT, "wa-backend-db")
        assert newest["id"] == backup_id and newest["status"] == "SUCCESSFUL"
        assert newest["description"] == "Pre-deployment: release wa-backend-00004"
        records = [r for r in deps.store.journal.audit() if r.action == "backup.succeeded"]
        assert records[-1].operation_id == "rel-1" and records[-1].detail["backup_id"] == backup_id
    finally:
        box.close()


# -- /ops restore ------------------------------------------------------------------------------


def ask_and_approve(box: Sandbox, service: str = SERVICE, backup: str = NEWEST) -> str:
    out = run(box, "as luis", f"/ops restore {service} {backup}", "click Ask to restore")
    run(box, "as sofia", "click Approve")
    return out


def test_restore_to_a_clone_end_to_end(box: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    out = run(box, "as luis", f"/ops restore {SERVICE} {NEWEST}")
    assert "*This will:*" in out and "create a new Cloud SQL instance `wa-backend-db-r" in out
    assert "Another tech lead must approve" in out
    assert calls(box, "sql.instances.insert") == 0, "nothing happens before the confirmation"
    shown_clone = out.split("create a new Cloud SQL instance `")[1].split("`")[0]
    box.clock.advance(120)  # the requester reads for two minutes: the clone keeps its name
    out = run(box, "click Ask to restore")
    assert "(Restore to a clone?" in out, "the confirm dialog says what will happen"
    assert latest(box, "restore").state == "awaiting_approval"
    run(box, "click Approve")  # luis asked: not his to approve
    assert any("another tech lead has to approve" in n for n in ephemerals(box))
    run(box, "as sofia", "click Approve")
    operation = latest(box, "restore")
    clone = RestoreData.of(operation).clone
    assert clone == shown_clone and operation.state == "creating"
    assert "Cloud SQL: PENDING" in card(box, "restore") or "RUNNING" in card(box, "restore")

    run(box, "wait 1m")
    assert "Cloud SQL: RUNNING" in card(box, "restore"), "progress on the card"
    run(box, "wait 5m", "wait 11m")  # the clone is created, then the backup restored
    operation = latest(box, "restore")
    assert operation.state == "judging"
    new = operation.to_revision
    assert serving(box) == {new: 100}
    assert box.emulator.sqladmin.instance(PROJECT, clone)["state"] == "RUNNABLE"
    revision = box.runtime.deps.cloudrun.get_revision(
        box.runtime.deps.service_ref(box.config.service(SERVICE)), new
    )
    [database_url] = [v for v in revision.env if v.name == "DATABASE_URL"]
    assert (database_url.secret, database_url.secret_version) == ("wa-backend-database-url", "2")
    pointed = box.emulator.secrets.value(PROJECT, "wa-backend-database-url", "2")
    assert f"/cloudsql/{PROJECT}:us-central1:{clone}" in pointed and SAMPLE_PASSWORD in pointed
    old = box.emulator.secrets.value(PROJECT, "wa-backend-database-url", "1")
    assert old.endswith("us-central1:wa-backend-db"), "the old revision keeps its database"
    assert "Go back to the old database" in card(box, "restore")

    run(box, "wait 10m")
    operation = latest(box, "restore")
    kept = RestoreData.of(operation)
    assert operation.state == "succeeded" and kept.verified is True
    assert kept.stored() == {k: v for k, v in operation.data.items() if k != "seq"}, "as typed"
    assert all(kept.steps[name].status == "done" for name in STEP_NAMES)
    shown = card(box, "restore")
    assert f"runs on `{clone}`" in shown and shown.count("✅") >= 9  # every step, with its time
    assert (
        calls(box, "sql.instances.insert") == 1 and calls(box, "sql.instances.restoreBackup") == 1
    )
    actions = audit(box)
    for action in ("restore.requested", "restore.approved", "restore.started", "restore.succeeded"):
        assert action in actions
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None
    assert_no_credentials(box, caplog)

    run(box, "as ana", "in #incidents", "click Go back to the old database")
    assert serving(box) == {BLUE: 100}, "going back is a traffic move to the old revision"
    assert latest(box, "rollback").to_revision == BLUE


def test_a_service_reading_latest_gets_a_new_secret(box: Sandbox) -> None:
    staging = "wa-backend-staging"
    newest = str(FIRST_RUN_ID + 6)
    out = run(box, "as luis", f"/ops restore {staging} {newest}")
    assert "a *new secret*" in out
    run(box, "click Ask to restore", "as sofia", "click Approve", "wait 6m", "wait 11m")
    operation = latest(box, "restore")
    assert operation.state == "judging"
    secret = RestoreData.of(operation).new_var.secret
    assert (
        secret.startswith("wa-backend-staging-database-url-")
        and secret != "wa-backend-staging-database-url"
    )
    assert box.emulator.secrets.versions(PROJECT, "wa-backend-staging-database-url") == ["1"]
    assert RestoreData.of(operation).clone in box.emulator.secrets.value(PROJECT, secret, "1")


def test_only_a_tech_lead_may_ask_and_the_backup_must_exist(box: Sandbox) -> None:
    run(box, "as marta", f"/ops restore {SERVICE} {NEWEST}")
    run(box, "as luis", f"/ops restore {SERVICE} 12345", f"/ops restore {SERVICE} latest")
    usage = run(box, "/ops restore wa-backend")
    notes = ephemerals(box)
    assert any("*tech lead* role" in n for n in notes)
    assert any("`12345` is not a successful backup of `wa-backend-db`" in n for n in notes)
    assert any("`latest` is not a backup id" in n for n in notes)
    assert "Usage: `/ops restore SERVICE BACKUP_ID`" in usage
    assert calls(box, "sql.instances.insert") == 0 and "restore.refused" in audit(box)


def test_a_failed_restore_leaves_the_service_as_it_was(box: Sandbox) -> None:
    box.emulator.sqladmin.fail_next_operations("RESTORE_VOLUME", "backup is corrupt")
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")
    operation = latest(box, "restore")
    assert operation.state == "failed" and RestoreData.of(operation).outcome.step == "restore"
    shown = card(box, "restore")
    assert "stopped at *Restore the backup into it*: backup is corrupt" in shown
    assert f"still serves `{BLUE}`" in shown
    assert serving(box) == {BLUE: 100} and calls(box, "run.services.patch") == 0
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None


def test_transient_faults_are_retried_and_a_refusal_stops_safely(box: Sandbox) -> None:
    run(box, "fault sql.instances.restoreBackup 503 2")
    run(box, "fault secretmanager.versions.access 403 5")
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")
    assert calls(box, "sql.instances.restoreBackup") == 3, "503s retried"
    operation = latest(box, "restore")
    assert operation.state == "failed" and RestoreData.of(operation).outcome.step == "secret"
    assert "*New secret version with the clone's URL (never shown)*: permission_denied" in card(
        box, "restore"
    )
    assert serving(box) == {BLUE: 100} and calls(box, "run.services.patch") == 0


def test_bad_numbers_on_the_clone_go_back_to_the_old_database(box: Sandbox) -> None:
    box.emulator.cloudrun.new_revision_behaviour(error_rate=0.2)
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")
    assert latest(box, "restore").state == "judging"
    run(box, "wait 6m")
    operation = latest(box, "restore")
    assert operation.state == "rolled_back"
    assert serving(box) == {BLUE: 100}
    assert "Back on `wa-backend-00003`" in card(box, "restore")


def test_a_restart_mid_restore_resumes_without_doing_anything_twice(box: Sandbox) -> None:
    ask_and_approve(box)
    run(box, "wait 1m")
    assert latest(box, "restore").state == "creating"
    box.runtime.engine.shutdown(wait=False)  # the bot goes away while Cloud SQL works...
    box.clock.advance(6 * 60)
    box.restart_bot()  # ...and the next instance follows the same operation
    operation = latest(box, "restore")
    assert operation.state == "restoring"
    box.runtime.engine.shutdown(wait=False)
    box.clock.advance(11 * 60)
    box.restart_bot()
    assert latest(box, "restore").state == "judging"
    assert (
        calls(box, "sql.instances.insert") == 1 and calls(box, "sql.instances.restoreBackup") == 1
    )
    assert calls(box, "secretmanager.versions.add") == 1
    run(box, "wait 10m")
    assert latest(box, "restore").state == "succeeded"


def test_go_back_while_judging_is_at_once(box: Sandbox) -> None:
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")
    run(box, "as marta", "click Go back to the old database")
    assert any("*tech lead* or an *on-call engineer*" in n for n in ephemerals(box))
    assert latest(box, "restore").state == "judging"
    run(box, "as luis", "click Go back to the old database")
    assert latest(box, "restore").state == "rolled_back" and serving(box) == {BLUE: 100}


def test_concurrent_approvals_decide_once(box: Sandbox) -> None:
    run(box, "as luis", f"/ops restore {SERVICE} {NEWEST}", "click Ask to restore", "as sofia")
    body, _ = box.click_body("Approve")
    threads = [threading.Thread(target=box.post, args=(body,)) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    box.runtime.engine.wait_idle()
    assert audit(box).count("restore.approved") == 1


def test_a_clone_name_someone_else_took_is_never_restored_over(box: Sandbox) -> None:
    run(box, "as luis", f"/ops restore {SERVICE} {NEWEST}", "click Ask to restore")
    taken = RestoreData.of(latest(box, "restore")).clone
    box.emulator.sqladmin.seed_instance(PROJECT, taken)  # made by hand, in the same minute
    run(box, "as sofia", "click Approve")
    operation = latest(box, "restore")
    assert operation.state == "failed" and RestoreData.of(operation).outcome.step == "create"
    assert calls(box, "sql.instances.restoreBackup") == 0 and serving(box) == {BLUE: 100}


def test_a_create_whose_answer_was_lost_stops_and_says_the_clone_may_exist(box: Sandbox) -> None:
    run(box, "fault sql.instances.insert 504 1")  # applied by Cloud SQL, the answer lost
    box.emulator.router.faults.list()[0].after = True
    ask_and_approve(box)
    operation = latest(box, "restore")
    assert operation.state == "failed" and calls(box, "sql.instances.insert") == 1, "not retried"
    assert f"The clone `{RestoreData.of(operation).clone}` may exist" in card(box, "restore")
    assert serving(box) == {BLUE: 100}


def test_a_url_that_names_another_database_is_never_shown(
    box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    box.emulator.secrets.seed_secret(
        PROJECT, "wa-backend-database-url", f"postgresql://app:{SAMPLE_PASSWORD}@db.example.com/app"
    )
    ask_and_approve(box)
    run(box, "wait 6m", "wait 11m")
    operation = latest(box, "restore")
    assert operation.state == "failed" and RestoreData.of(operation).outcome.step == "secret"
    assert "names neither the instance's connection name nor its IP address" in card(box, "restore")
    assert serving(box) == {BLUE: 100}
    assert_no_credentials(box, caplog)


def test_a_restore_on_postgresql_survives_a_restart(pg_sandbox: Sandbox) -> None:
    """The store several Runback instances share: the same restore, taken over after a restart."""
    box = pg_sandbox
    ask_and_approve(box)
    run(box, "wait 1m")
    box.runtime.engine.shutdown(wait=False)
    box.clock.advance(6 * 60)  # Cloud SQL creates the clone meanwhile
    box.restart_bot()
    assert latest(box, "restore").state == "restoring"
    run(box, "wait 11m")
    operation = latest(box, "restore")
    assert operation.state in ("judging", "succeeded")
    assert serving(box) == {operation.to_revision: 100}
    assert (
        calls(box, "sql.instances.insert") == 1 and calls(box, "sql.instances.restoreBackup") == 1
    )
