"""The restore's state machine: clone, restore, point the secret, deploy, shift, judge.

approved -> creating -> restoring -> checking -> pointing -> deploying -> smoke -> shifting ->
judging -> succeeded; going_back -> rolled_back; failed. Each long step commits what it
started (the Cloud SQL or Cloud Run operation's name) before following it, and is due again
every ``backups.poll_interval_s``, so a restarted bot follows the same operation and the card
shows progress. Until traffic moves, a failure leaves the service as it was ("failed"); after,
it goes back to the revision that used the old database.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from bot.ops.backups.target import Database, cloudsql, resolve_database, secrets
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.health import config_problem, health_observation, probe_health
from bot.ops.metrics_window import read_fresh
from bot.ops.restore.view import refresh
from bot.ops.rollback.steps import pinned_targets
from bot.ops.stepping import advance
from bot.policy.databases import Endpoint, UrlError, point_at_clone, secret_target
from bot.policy.gates import Verdict, after_observation, judge
from bot.ports import (
    CloudRunError,
    CloudSqlError,
    EnvVar,
    SecretsError,
    SqlOperation,
    TrafficTarget,
)
from bot.store import Move, Operation

log = logging.getLogger("runback.restore")

RUNNING_STATES = (
    "approved",
    "creating",
    "restoring",
    "checking",
    "pointing",
    "deploying",
    "smoke",
    "shifting",
    "judging",
    "going_back",
)
FINAL_STATES = ("succeeded", "failed", "rolled_back", "rejected", "expired", "cancelled")
STEP_NAMES = ("create", "restore", "runnable", "secret", "deploy", "smoke", "shift", "verify")
RESTORE_TAG = "restored"
MAX_STEPS_PER_RUN = 50


def execute(deps: Deps, operation_id: str) -> Operation:
    return advance(deps, operation_id, STEPS, name="restore", max_steps=MAX_STEPS_PER_RUN)


# -- Cloud SQL: the clone, the restore ---------------------------------------------------------


def _step_approved(deps: Deps, operation: Operation) -> Operation:
    deps.audit(
        BOT_ACTOR,
        "restore.started",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        clone=operation.data["clone"],
    )
    return _commit(deps, _begin(deps, operation, "create"), "creating")


def _step_create(deps: Deps, operation: Operation) -> Operation:
    data = operation.data
    sql = cloudsql(deps)
    if not data.get("sql_op"):
        retry = bool(data.get("create_sent"))  # an earlier attempt's answer may have been lost
        operation = _commit(deps, operation, create_sent=True)
        try:
            source = sql.get_instance(data["project"], data["instance"])
            started = sql.start_create_instance(source, data["clone"])
        except CloudSqlError as error:
            state = (
                _clone_state(deps, data) if error.reason in ("already_exists", "conflict") else ""
            )
            if state and retry:  # ours, from before the restart: follow it by its state
                if state != "RUNNABLE":
                    return _later(deps, operation, "create", instance_state=state)
                return _commit(deps, _done(deps, operation, "create"), "restoring")
            return _fail(deps, operation, "create", _why(error))
        return _following(deps, operation, started, "create")
    return _follow(deps, operation, "create", then="restoring")


def _step_restore(deps: Deps, operation: Operation) -> Operation:
    data = operation.data
    if not data.get("sql_op"):
        operation = _begin(deps, operation, "restore")
        try:
            started = cloudsql(deps).start_restore(
                data["project"], data["clone"], data["backup"]["id"], data["instance"]
            )
        except CloudSqlError as error:
            return _fail(deps, operation, "restore", _why(error))
        return _following(deps, operation, started, "restore")
    return _follow(deps, operation, "restore", then="checking")


def _step_check(deps: Deps, operation: Operation) -> Operation:
    data = operation.data
    if "runnable" not in data["steps"]:
        operation = _begin(deps, operation, "runnable")
    try:
        clone = cloudsql(deps).get_instance(data["project"], data["clone"])
    except CloudSqlError as error:
        return _later(deps, operation, "runnable", unreachable=error.reason)
    if clone.runnable:
        operation = _commit(
            deps, operation, clone_endpoint=[clone.connection_name, list(clone.ip_addresses)]
        )
        return _commit(deps, _done(deps, operation, "runnable"), "pointing")
    return _later(deps, operation, "runnable", instance_state=clone.state)


def _following(deps: Deps, operation: Operation, started: SqlOperation, step: str) -> Operation:
    deps.audit(
        BOT_ACTOR,
        f"cloudsql.{step}",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        cloud_operation=started.name,
        clone=operation.data["clone"],
    )
    return _commit(
        deps, operation, sql_op=started.name, sql_status=started.status, due_at=_due(deps)
    )


def _follow(deps: Deps, operation: Operation, step: str, then: str) -> Operation:
    data = operation.data
    try:
        followed = cloudsql(deps).get_operation(data["project"], data["sql_op"])
    except CloudSqlError as error:
        return _later(deps, operation, step, unreachable=error.reason)
    if not followed.done:
        return _later(deps, operation, step, sql_status=followed.status, unreachable="")
    if followed.error:
        return _fail(deps, operation, step, followed.error)
    operation = _commit(deps, operation, sql_op="", sql_status="", unreachable="")
    return _commit(deps, _done(deps, operation, step), then)


def _clone_state(deps: Deps, data: dict[str, Any]) -> str:
    """The clone's state; "" when it cannot be read."""
    try:
        return cloudsql(deps).get_instance(data["project"], data["clone"]).state
    except CloudSqlError:
        return ""


# -- Secret Manager: the clone's URL, never shown -----------------------------------------------


def _step_point(deps: Deps, operation: Operation) -> Operation:
    data = operation.data
    operation = _begin(deps, operation, "secret")
    database = _database(deps, operation)
    project, secret = _secret_location(data["secret"], database.project)
    store = secrets(deps)
    try:
        source = cloudsql(deps).get_instance(data["project"], data["instance"])
        current = store.access(project, secret, data["secret_version"])
        old = Endpoint(source.connection_name, source.ip_addresses)
        new = Endpoint(data["clone_endpoint"][0], tuple(data["clone_endpoint"][1]))
        url = point_at_clone(current, old, new)
        del current
        target_secret = secret
        if secret_target(data["secret_version"]) == "new_secret":
            target_secret = f"{secret}-{data['clone'].rsplit('-r', 1)[-1]}"[:255]
            _create_secret(store, project, target_secret)
        version = store.add_version(project, target_secret, url)
        del url
    except UrlError as error:
        return _fail(deps, operation, "secret", f"url:{error.problem}")
    except (CloudSqlError, SecretsError) as error:
        return _fail(deps, operation, "secret", _why(error))
    deps.audit(
        BOT_ACTOR,
        "secretmanager.version_added",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        secret=target_secret,
        version=version,
    )
    operation = _commit(
        deps,
        operation,
        new_var={"secret": target_secret, "version": version, "project": project},
        swap=[source.connection_name, data["clone_endpoint"][0]],
    )
    return _commit(deps, _done(deps, operation, "secret"), "deploying")


def _create_secret(store: Any, project: str, secret: str) -> None:
    try:
        store.create_secret(project, secret)
    except SecretsError as error:
        if error.reason != "already_exists":  # made by this restore before a restart
            raise


def _secret_location(secret: str, default_project: str) -> tuple[str, str]:
    parts = secret.split("/")
    if len(parts) == 4 and parts[0] == "projects" and parts[2] == "secrets":
        return parts[1], parts[3]
    return default_project, secret


# -- Cloud Run: the new revision, the smoke test, the shift, the judgement ---------------------


def _step_deploy(deps: Deps, operation: Operation) -> Operation:
    data = operation.data
    database = _database(deps, operation)
    ref = deps.service_ref(database.service)
    if not data.get("run_op"):
        operation = _begin(deps, operation, "deploy")
        try:
            revisions = deps.cloudrun.list_revisions(ref)
            state = deps.cloudrun.get_service(ref)
            from bot.ops.release import next_revision_name

            name = next_revision_name(operation.service, revisions)
            targets = [TrafficTarget(s.revision, s.percent, s.tag) for s in state.traffic]
            targets = [t for t in targets if t.tag != RESTORE_TAG]
            targets.append(TrafficTarget(name, 0, RESTORE_TAG))
            new = data["new_var"]
            secret = new["secret"]
            if new["project"] != data["project"] or "/" in data["secret"]:
                secret = f"projects/{new['project']}/secrets/{secret}"
            var = EnvVar(database.env, secret=secret, secret_version=new["version"])
            base = max(state.serving().items(), key=lambda share: share[1])[0]
            op = deps.cloudrun.start_env_update(
                ref, base, var, name, targets, state.etag, cloudsql_swap=tuple(data["swap"])
            )
        except CloudRunError as error:
            return _fail(deps, operation, "deploy", error.detail or error.reason)
        deps.store.update_operation(operation.id, deps.clock.now(), to_revision=name)
        _audit_run(deps, operation, "deploy", op, name)
        operation = _commit(deps, operation, run_op=op)
    try:
        state = deps.cloudrun.wait_operation(
            operation.data["run_op"], deps.config.release.operation_timeout_s
        )
    except CloudRunError as error:
        if error.reason == "operation_timeout":
            return _later(deps, operation, "deploy")
        return _fail(deps, operation, "deploy", error.detail or error.reason)
    tag_uri = next((s.uri for s in state.traffic if s.tag == RESTORE_TAG), "")
    operation = _commit(deps, operation, run_op="", tag_uri=tag_uri, service_uri=state.uri)
    return _commit(deps, _done(deps, operation, "deploy"), "smoke")


def _step_smoke(deps: Deps, operation: Operation) -> Operation:
    operation = _begin(deps, operation, "smoke")
    service = deps.managed_service(operation.service)
    data = operation.data
    settings = deps.config.release
    in_a_row = 0
    url, result = "", None
    for attempt in range(settings.smoke_checks + 2):
        if attempt:
            deps.clock.sleep(deps.config.rollback.health_check_interval_s)
        url, result = probe_health(
            deps, service, data["tag_uri"], service_url=data["service_uri"], custom_domain=False
        )
        if config_problem(result):
            break
        in_a_row = in_a_row + 1 if result.ok else 0
        if in_a_row >= settings.smoke_checks:
            return _commit(deps, _done(deps, operation, "smoke", url=url), "shifting")
    answer = (result.status or result.detail) if result is not None else ""
    return _fail(deps, operation, "smoke", f"{url} answered {answer}")


def _step_shift(deps: Deps, operation: Operation) -> Operation:
    data = operation.data
    ref = deps.service_ref(deps.managed_service(operation.service))
    if not data.get("run_op"):
        operation = _begin(deps, operation, "shift")
        try:
            state = deps.cloudrun.get_service(ref)
            targets = _without_restore_tag(pinned_targets(state, operation.to_revision))
            op = deps.cloudrun.start_traffic_update(ref, targets, state.etag)
        except CloudRunError as error:
            return _fail(deps, operation, "shift", error.detail or error.reason)
        _audit_run(deps, operation, "shift", op, operation.to_revision)
        operation = _commit(deps, operation, run_op=op)
    try:
        state = deps.cloudrun.wait_operation(
            operation.data["run_op"], deps.config.release.operation_timeout_s
        )
    except CloudRunError as error:
        if error.reason == "operation_timeout":
            return _later(deps, operation, "shift")
        return _back(deps, _commit(deps, operation, run_op=""), "shift", error.detail)
    if state.serving() != {operation.to_revision: 100}:
        return _back(deps, _commit(deps, operation, run_op=""), "shift", str(state.serving()))
    now = deps.clock.now()
    deps.store.record_serving(operation.service, operation.to_revision, "served", now, operation.id)
    operation = _commit(deps, operation, run_op="", shifted_at=now.isoformat())
    operation = _done(deps, operation, "shift")
    operation = _begin(deps, operation, "verify")
    release = deps.config.release
    return _commit(deps, operation, "judging", due_at=_due(deps, release.warmup_s))


def _without_restore_tag(targets: list[TrafficTarget]) -> list[TrafficTarget]:
    """The new revision takes the traffic; its temporary tag goes (a 0% target without a tag
    would mean nothing, so it goes too)."""
    kept = [
        TrafficTarget(t.revision, t.percent, "" if t.tag == RESTORE_TAG else t.tag) for t in targets
    ]
    return [t for t in kept if t.percent or t.tag]


def _step_judge(deps: Deps, operation: Operation) -> Operation:
    data = operation.data
    service = deps.managed_service(operation.service)
    ref = deps.service_ref(service)
    now = deps.clock.now()
    release = deps.config.release
    not_before = datetime.fromisoformat(data["shifted_at"]) + timedelta(seconds=release.warmup_s)
    # the freshest window that can decide; Monitoring faults read as no data, never a pass
    numbers = read_fresh(deps, ref, operation.to_revision, not_before).numbers
    _, probe = probe_health(deps, service, data.get("service_uri", ""))
    judgement = judge(deps.config.thresholds, health_observation(probe, *numbers))
    verdict = judgement.verdict
    observing = data.get("observing_since")
    if verdict is Verdict.OBSERVE or (observing and verdict is not Verdict.PROCEED):
        since = datetime.fromisoformat(observing) if observing else now
        verdict = after_observation(deps.config.thresholds, judgement, since, now)
        observing = observing or now.isoformat()
    seen = {"at": now.isoformat(), "verdict": str(verdict), **judgement.numbers()}
    deps.audit(
        BOT_ACTOR,
        "restore.judged",
        str(verdict),
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        **seen,
    )
    operation = _commit(deps, operation, last=seen, observing_since=observing)
    if verdict is Verdict.ROLLBACK:
        return _back(deps, operation, "verify", ", ".join(seen["reasons"]))
    if verdict is Verdict.PROCEED:
        return _succeed(deps, operation, verified=True)
    waited = (now - datetime.fromisoformat(data["shifted_at"])).total_seconds()
    if verdict is Verdict.INCONCLUSIVE and waited >= release.inconclusive_limit_s:
        return _succeed(deps, operation, verified=False)
    return _commit(deps, operation, due_at=_due(deps, release.judge_interval_s))


def _step_go_back(deps: Deps, operation: Operation) -> Operation:
    ref = deps.service_ref(deps.managed_service(operation.service))
    try:
        state = deps.cloudrun.get_service(ref)
        if state.serving() != {operation.from_revision: 100}:
            op = deps.cloudrun.start_traffic_update(
                ref, pinned_targets(state, operation.from_revision), state.etag
            )
            _audit_run(deps, operation, "go_back", op, operation.from_revision)
            state = deps.cloudrun.wait_operation(op, deps.config.rollback.operation_timeout_s)
    except CloudRunError as error:
        return _end(deps, operation, "failed", going_back_failed=error.detail or error.reason)
    deps.store.record_serving(
        operation.service, operation.to_revision, "rolled_back_from", deps.clock.now(), operation.id
    )
    return _end(deps, operation, "rolled_back", serving=state.serving())


STEPS = {
    "approved": _step_approved,
    "creating": _step_create,
    "restoring": _step_restore,
    "checking": _step_check,
    "pointing": _step_point,
    "deploying": _step_deploy,
    "smoke": _step_smoke,
    "shifting": _step_shift,
    "judging": _step_judge,
    "going_back": _step_go_back,
}


# -- endings, approvals, buttons ---------------------------------------------------------------


def _succeed(deps: Deps, operation: Operation, verified: bool) -> Operation:
    operation = _done(deps, operation, "verify", verified=verified)
    return _end(deps, operation, "succeeded", verified=verified)


def _back(deps: Deps, operation: Operation, step: str, why: str) -> Operation:
    """Traffic may be on the clone's revision and must not stay there: go back."""
    operation = _mark(deps, operation, step, "failed", note=why)
    return _commit(deps, operation, "going_back", due_at=None, outcome={"step": step, "why": why})


def _fail(deps: Deps, operation: Operation, step: str, why: str) -> Operation:
    """A step failed before any traffic moved: the service is as it was."""
    operation = _mark(deps, operation, step, "failed", note=why)
    return _end(deps, operation, "failed", outcome={"step": step, "why": why})


def _end(deps: Deps, operation: Operation, state: str, **data: Any) -> Operation:
    operation = _commit(deps, operation, state, due_at=None, **data)
    deps.store.release_lock(operation.service, operation.id)
    outcome = data.get("outcome") or {}
    deps.audit(
        BOT_ACTOR,
        f"restore.{state}",
        "ok" if state == "succeeded" else state,
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        clone=operation.data.get("clone", ""),
        **{k: v for k, v in outcome.items() if isinstance(v, str)},
    )
    deps.store.add_event(operation.id, deps.clock.now(), state, actor=BOT_ACTOR)
    return operation


def decided(operation: Operation, approve: bool) -> Move:
    if approve:
        return Move(operation.id, "awaiting_approval", "approved")
    return Move(operation.id, "awaiting_approval", "rejected", release_lock_of=operation.service)


def on_decided(deps: Deps, operation: Operation, approve: bool, user: str) -> None:
    if deps.store.move_operation(decided(operation, approve), deps.clock.now()):
        refresh(deps, operation.id)


def on_expired(deps: Deps, operation: Operation) -> None:
    move = Move(operation.id, "awaiting_approval", "expired", release_lock_of=operation.service)
    if deps.store.move_operation(move, deps.clock.now()):
        deps.audit(BOT_ACTOR, "restore.expired", "expired", service=operation.service)
        refresh(deps, operation.id)


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    operation = deps.store.operation(operation_id)
    if operation is None or operation.state in FINAL_STATES:
        return
    if operation.data.get("shifted_at") and operation.state != "going_back":
        _commit(deps, operation, "going_back", outcome={"step": "internal", "why": "internal"})
    else:
        _end(deps, operation, "failed", outcome={"step": operation.state, "why": "internal"})


def go_back_now(deps: Deps, operation: Operation, user: str) -> bool:
    """A person asked to go back while the restore is being judged; False if it is not."""
    move = Move(operation.id, "judging", "going_back")
    if not deps.store.move_operation(move, deps.clock.now()):
        return False
    deps.store.merge_data(
        operation.id,
        deps.clock.now(),
        outcome={"step": "verify", "why": "asked", "by": user},
        due_at=None,
    )
    deps.audit(user, "restore.go_back", "ok", service=operation.service, operation_id=operation.id)
    refresh(deps, operation.id)
    return True


# -- bookkeeping -------------------------------------------------------------------------------


def _why(error: CloudSqlError | SecretsError) -> str:
    """``reason (detail)``: the reason says what to fix (``permission_denied``...)."""
    return f"{error.reason} ({error.detail})" if error.detail else error.reason


def _database(deps: Deps, operation: Operation) -> Database:
    return resolve_database(deps, operation.service)


def _due(deps: Deps, seconds: float | None = None) -> str:
    wait = deps.config.backups.poll_interval_s if seconds is None else seconds
    return (deps.clock.now() + timedelta(seconds=wait)).isoformat()


def _later(deps: Deps, operation: Operation, step: str, **data: Any) -> Operation:
    """Not done yet: look again at the next poll, unless the restore has taken too long."""
    started = datetime.fromisoformat(operation.data["steps"][STEP_NAMES[0]]["started"])
    if (deps.clock.now() - started).total_seconds() > deps.config.backups.restore_timeout_s:
        if operation.data.get("shifted_at"):
            return _back(deps, operation, step, "timeout")
        return _fail(deps, operation, step, "timeout")
    return _commit(deps, operation, due_at=_due(deps), **data)


def _audit_run(deps: Deps, operation: Operation, what: str, op: str, revision: str) -> None:
    deps.audit(
        BOT_ACTOR,
        f"cloudrun.restore_{what}",
        "ok",
        service=operation.service,
        revision=revision,
        operation_id=operation.id,
        cloud_operation=op,
    )


def _begin(deps: Deps, operation: Operation, step: str) -> Operation:
    if step in operation.data["steps"]:
        return operation
    return _mark(deps, operation, step, "running")


def _done(deps: Deps, operation: Operation, step: str, **note: Any) -> Operation:
    return _mark(deps, operation, step, "done", **note)


def _mark(deps: Deps, operation: Operation, step: str, status: str, **note: Any) -> Operation:
    now = deps.clock.now().isoformat()
    steps = dict(operation.data["steps"])
    mark = dict(steps.get(step) or {"started": now})
    mark["status"] = status
    if status != "running":
        mark["ended"] = now
    mark.update({k: v for k, v in note.items() if isinstance(v, str | bool)})
    steps[step] = mark
    return _commit(deps, operation, steps=steps)


def _commit(deps: Deps, operation: Operation, state: str | None = None, **data: Any) -> Operation:
    now = deps.clock.now()
    fields: dict[str, Any] = {"data": {**operation.data, **data}}
    if state is not None:
        fields["state"] = state
        if state in FINAL_STATES:
            fields["finished_at"] = now
    updated = deps.store.update_operation(operation.id, now, **fields)
    refresh(deps, operation.id)
    return updated
