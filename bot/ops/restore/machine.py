"""The restore's state machine: clone, restore, point the secret, deploy, shift, judge.

approved -> creating -> restoring -> checking -> pointing -> deploying -> smoke -> shifting ->
judging -> succeeded; going_back -> rolled_back; failed. Each long step commits what it
started (the Cloud SQL or Cloud Run operation's name) before following it, and is due again
every ``backups.poll_interval_s``, so a restarted bot follows the same operation and the card
shows progress. Until traffic moves, a failure leaves the service as it was ("failed"); after,
it goes back to the revision that used the old database.

An on-call engineer's /rollback never waits for a restore (people.take_back): before its
revision serves, the restore gives the service's lock to the rollback and goes on with its
clone; the steps that touch Cloud Run (deploy, shift) take the lock back first, and build on
whatever revision serves then.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from bot.ops.applying import Followed, follow_change
from bot.ops.backups.target import Database, cloudsql, resolve_database, secrets
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.health import config_problem, probe_health
from bot.ops.release import next_revision_name
from bot.ops.restore.endpoints import old_endpoints, secret_location
from bot.ops.restore.judging import step_judge
from bot.ops.restore.record import (
    again,
    audit_run,
    back,
    begin,
    commit,
    done,
    due,
    end,
    fail,
    later,
    why,
)
from bot.ops.restore.states import KIND, RESTORE_TAG, RestoreData
from bot.ops.slow import still_applying
from bot.ops.stepping import advance
from bot.ops.traffic import pinned_targets
from bot.policy.databases import (
    Endpoint,
    UrlError,
    clone_settings_summary,
    point_at_clone_from,
    secret_target,
)
from bot.ports import (
    CloudRunError,
    CloudSqlError,
    EnvVar,
    EtagConflict,
    SecretsError,
    ServiceRef,
    ServiceState,
    SqlOperation,
    TrafficTarget,
)
from bot.store import Operation

log = logging.getLogger("runback.restore")

MAX_STEPS_PER_RUN = 50
YIELD_GRACE_S = 60  # after stepping aside, the longest an on-call rollback takes to begin


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
        clone=RestoreData.of(operation).clone,
    )
    return commit(deps, begin(deps, operation, "create"), "creating")


def _step_create(deps: Deps, operation: Operation) -> Operation:
    data = RestoreData.of(operation)
    sql = cloudsql(deps)
    if not data.sql_op:
        retry = data.create_sent  # an earlier attempt's answer may have been lost
        operation = commit(deps, operation, create_sent=True)
        try:
            source = sql.get_instance(data.project, data.instance)
            operation = commit(deps, operation, copied=clone_settings_summary(source.settings))
            started = sql.start_create_instance(source, data.clone)
        except CloudSqlError as error:
            state = (
                _clone_state(deps, data) if error.reason in ("already_exists", "conflict") else ""
            )
            if state and retry:  # ours, from before the restart: follow it by its state
                if state != "RUNNABLE":
                    return later(deps, operation, "create", instance_state=state)
                return commit(deps, done(deps, operation, "create"), "restoring")
            return fail(deps, operation, "create", why(error))
        return _following(deps, operation, started, "create")
    return _follow(deps, operation, "create", then="restoring")


def _step_restore(deps: Deps, operation: Operation) -> Operation:
    data = RestoreData.of(operation)
    if not data.sql_op:
        operation = begin(deps, operation, "restore")
        sql = cloudsql(deps)
        if data.restore_sent:  # an earlier run may have started it, then died unheard
            try:
                ours = [
                    op
                    for op in sql.recent_operations(data.project, data.clone)
                    if op.operation_type == "RESTORE_VOLUME"
                ]
            except CloudSqlError as error:
                return later(deps, operation, "restore", unreachable=error.reason)
            if ours:  # the clone is this restore's own instance: its restore is ours
                return _following(deps, operation, ours[0], "restore")
        operation = commit(deps, operation, restore_sent=True)
        try:
            started = sql.start_restore(data.project, data.clone, data.backup.id, data.instance)
        except CloudSqlError as error:
            return fail(deps, operation, "restore", why(error))
        return _following(deps, operation, started, "restore")
    return _follow(deps, operation, "restore", then="checking")


def _step_check(deps: Deps, operation: Operation) -> Operation:
    data = RestoreData.of(operation)
    if "runnable" not in data.steps:
        operation = begin(deps, operation, "runnable")
    try:
        clone = cloudsql(deps).get_instance(data.project, data.clone)
    except CloudSqlError as error:
        return later(deps, operation, "runnable", unreachable=error.reason)
    if clone.runnable:
        operation = commit(
            deps, operation, clone_endpoint=[clone.connection_name, list(clone.ip_addresses)]
        )
        return commit(deps, done(deps, operation, "runnable"), "pointing")
    return later(deps, operation, "runnable", instance_state=clone.state)


def _following(deps: Deps, operation: Operation, started: SqlOperation, step: str) -> Operation:
    deps.audit(
        BOT_ACTOR,
        f"cloudsql.{step}",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        cloud_operation=started.name,
        clone=RestoreData.of(operation).clone,
    )
    return commit(deps, operation, sql_op=started.name, sql_status=started.status, due_at=due(deps))


def _follow(deps: Deps, operation: Operation, step: str, then: str) -> Operation:
    data = RestoreData.of(operation)
    try:
        followed = cloudsql(deps).get_operation(data.project, data.sql_op)
    except CloudSqlError as error:
        return later(deps, operation, step, unreachable=error.reason)
    if not followed.done:
        return later(deps, operation, step, sql_status=followed.status, unreachable="")
    if followed.error:
        return fail(deps, operation, step, followed.error)
    operation = commit(deps, operation, sql_op="", sql_status="", unreachable="")
    return commit(deps, done(deps, operation, step), then)


def _clone_state(deps: Deps, data: RestoreData) -> str:
    """The clone's state; "" when it cannot be read."""
    try:
        return cloudsql(deps).get_instance(data.project, data.clone).state
    except CloudSqlError:
        return ""


# -- Secret Manager: the clone's URL, never shown -----------------------------------------------


def _step_point(deps: Deps, operation: Operation) -> Operation:
    data = RestoreData.of(operation)
    operation = begin(deps, operation, "secret")
    database = _database(deps, operation)
    project, secret = secret_location(data.secret, database.project)
    store = secrets(deps)
    try:
        assert data.clone_endpoint is not None, "the runnable step wrote it"
        clone_connection, clone_addresses = data.clone_endpoint
        olds = old_endpoints(deps, database)
        current = store.access(project, secret, data.secret_version)
        new = Endpoint(clone_connection, clone_addresses)
        url, old = point_at_clone_from(current, olds, new)
        del current
        target_secret = secret
        if secret_target(data.secret_version) == "new_secret":
            target_secret = f"{secret}-{data.clone.rsplit('-r', 1)[-1]}"[:255]
            _create_secret(store, project, target_secret)
        version = store.add_version(project, target_secret, url)
        del url
    except UrlError as error:
        return fail(deps, operation, "secret", f"url:{error.problem}")
    except (CloudSqlError, SecretsError) as error:
        return fail(deps, operation, "secret", why(error))
    deps.audit(
        BOT_ACTOR,
        "secretmanager.version_added",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        secret=target_secret,
        version=version,
    )
    operation = commit(
        deps,
        operation,
        new_var={"secret": target_secret, "version": version, "project": project},
        swap=[old.connection_name, clone_connection],
        replaces=old.connection_name.rsplit(":", 1)[-1],
    )
    return commit(deps, done(deps, operation, "secret"), "deploying")


def _create_secret(store: Any, project: str, secret: str) -> None:
    try:
        store.create_secret(project, secret)
    except SecretsError as error:
        if error.reason != "already_exists":  # made by this restore before a restart
            raise


# -- Cloud Run: the new revision, the smoke test, the shift, the judgement ---------------------


def _step_deploy(deps: Deps, operation: Operation) -> Operation:
    data = RestoreData.of(operation)
    database = _database(deps, operation)
    ref = deps.service_ref(database.service)
    if not data.run_op:
        if not _holds_service(deps, operation):
            return _wait_for_service(deps, operation, "deploy")
        operation = begin(deps, operation, "deploy")
        try:
            revisions = deps.cloudrun.list_revisions(ref)
            state = deps.cloudrun.get_service(ref)
            name = next_revision_name(operation.service, revisions)
            targets = [TrafficTarget(s.revision, s.percent, s.tag) for s in state.traffic]
            targets = [t for t in targets if t.tag != RESTORE_TAG]
            targets.append(TrafficTarget(name, 0, RESTORE_TAG))
            new = data.new_var
            assert new is not None, "the secret step wrote it"
            secret = new.secret
            if new.project != data.project or "/" in data.secret:
                secret = f"projects/{new.project}/secrets/{secret}"
            var = EnvVar(database.env, secret=secret, secret_version=new.version)
            base = _serving_most(state)
            denied = _let_read(deps, operation, ref, base)
            if denied:
                return fail(deps, operation, "deploy", denied)
            op = deps.cloudrun.start_env_update(
                ref, base, var, name, targets, state.etag, cloudsql_swap=data.swap
            )
        except EtagConflict:  # someone changed the service between the read and the PATCH
            return later(deps, operation, "deploy")
        except CloudRunError as error:
            return fail(deps, operation, "deploy", error.detail or error.reason)
        audit_run(deps, operation, "deploy", op, name)
        # Going back means the revision that serves now (an on-call rollback may have moved
        # it since the restore was asked); stored with the operation's name, in one write.
        between = {"to_revision": name, "from_revision": base}
        operation = commit(deps, operation, columns=between, run_op=op, base=base, waiting_for=None)
    followed = _follow_run(deps, operation, expect=None)  # at 0%: any traffic it leaves
    if followed.slow is not None:
        return later(deps, operation, "deploy")
    deployed = followed.applied
    if deployed is None:
        assert followed.failed is not None
        return fail(deps, operation, "deploy", _said(followed.failed))
    tag_uri = next((s.uri for s in deployed.traffic if s.tag == RESTORE_TAG), "")
    operation = commit(deps, operation, run_op="", tag_uri=tag_uri, service_uri=deployed.uri)
    return commit(deps, done(deps, operation, "deploy"), "smoke")


def _step_smoke(deps: Deps, operation: Operation) -> Operation:
    operation = begin(deps, operation, "smoke")
    service = deps.managed_service(operation.service)
    data = RestoreData.of(operation)
    settings = deps.config.release
    in_a_row = 0
    url, result = "", None
    for attempt in range(settings.smoke_checks + 2):
        if attempt:
            deps.clock.sleep(deps.config.rollback.health_check_interval_s)
        url, result = probe_health(
            deps, service, data.tag_uri, service_url=data.service_uri, custom_domain=False
        )
        if config_problem(result):
            break
        in_a_row = in_a_row + 1 if result.ok else 0
        if in_a_row >= settings.smoke_checks:
            return commit(deps, done(deps, operation, "smoke", url=url), "shifting")
    answer = (result.status or result.detail) if result is not None else ""
    lost = _tag_lost(deps, operation)
    if lost:  # an on-call rollback's traffic update took the tag: deploy again when it ends
        return _rebuild(deps, operation, lost)
    untagged = _untag(deps, operation)
    return fail(deps, operation, "smoke", f"{url} answered {answer}{untagged}")


def _let_read(deps: Deps, operation: Operation, ref: ServiceRef, base: str) -> str:
    """A new secret is readable by nobody: let the service account of the revision the new
    one is built on read it (that secret only), or Cloud Run never makes the revision Ready.
    A new version of the secret the service reads needs nothing. "" when done, else why not."""
    data = RestoreData.of(operation)
    if secret_target(data.secret_version) != "new_secret":
        return ""
    account = deps.cloudrun.get_revision(ref, base).service_account
    if not account:  # the default compute account, whose email Runback cannot know
        return ""
    new = data.new_var
    assert new is not None, "the secret step wrote it"
    try:
        secrets(deps).grant_accessor(new.project, new.secret, f"serviceAccount:{account}")
    except SecretsError as error:
        return f"secret_access: {why(error)}"
    deps.audit(
        BOT_ACTOR,
        "secretmanager.accessor_granted",
        "ok",
        service=operation.service,
        operation_id=operation.id,
        secret=new.secret,
        member=f"serviceAccount:{account}",
    )
    return ""


def _tag_lost(deps: Deps, operation: Operation) -> str:
    """The revision that serves most, when the restore's tag is no longer on its revision
    (someone else's traffic update dropped it); "" when it is (or the service is unreadable)."""
    ref = deps.service_ref(deps.managed_service(operation.service))
    try:
        state = deps.cloudrun.get_service(ref)
    except CloudRunError:
        return ""
    tagged = any(
        s.tag == RESTORE_TAG and s.revision == operation.to_revision for s in state.traffic
    )
    return "" if tagged or not state.serving() else _serving_most(state)


def _untag(deps: Deps, operation: Operation) -> str:
    """Take the restore's tag off its revision, which will never serve ("" when done, else
    why not, for the card)."""
    ref = deps.service_ref(deps.managed_service(operation.service))
    for _ in range(3):
        try:
            state = deps.cloudrun.get_service(ref)
            if not any(s.tag == RESTORE_TAG for s in state.traffic):
                return ""
            kept = [TrafficTarget(s.revision, s.percent, s.tag) for s in state.traffic]
            kept = [t for t in kept if t.tag != RESTORE_TAG and (t.percent or t.tag)]
            op = deps.cloudrun.start_traffic_update(ref, kept, state.etag)
            audit_run(deps, operation, "untag", op, operation.to_revision)
            timeout = deps.config.release.operation_timeout_s
            followed = follow_change(deps, op, None, timeout)
            trouble = followed.slow or followed.failed
            return f"; the tag `{RESTORE_TAG}` stays ({trouble.reason})" if trouble else ""
        except EtagConflict:
            continue
        except CloudRunError as error:
            return f"; the tag `{RESTORE_TAG}` stays ({error.reason})"
    return f"; the tag `{RESTORE_TAG}` stays (etag_conflict)"


def _step_shift(deps: Deps, operation: Operation) -> Operation:
    data = RestoreData.of(operation)
    ref = deps.service_ref(deps.managed_service(operation.service))
    if not data.run_op:
        if not _holds_service(deps, operation):
            return _wait_for_service(deps, operation, "shift")
        operation = begin(deps, operation, "shift")
        try:
            state = deps.cloudrun.get_service(ref)
            if _serving_most(state) != (data.base or operation.from_revision):
                return _rebuild(deps, operation, _serving_most(state))
            targets = pinned_targets(state, operation.to_revision, drop=(RESTORE_TAG,))
            op = deps.cloudrun.start_traffic_update(ref, targets, state.etag)
        except EtagConflict:
            return later(deps, operation, "shift")
        except CloudRunError as error:
            return fail(deps, operation, "shift", error.detail or error.reason)
        audit_run(deps, operation, "shift", op, operation.to_revision)
        operation = commit(deps, operation, run_op=op, waiting_for=None)
    followed = _follow_run(deps, operation, expect={operation.to_revision: 100})
    if followed.slow is not None:
        return later(deps, operation, "shift")
    if followed.applied is None:
        assert followed.failed is not None
        return back(deps, commit(deps, operation, run_op=""), "shift", _said(followed.failed))
    now = deps.clock.now()
    deps.store.serving.record_serving(
        operation.service, operation.to_revision, "served", now, operation.id
    )
    operation = commit(deps, operation, run_op="", shifted_at=now.isoformat())
    operation = done(deps, operation, "shift")
    operation = begin(deps, operation, "verify")
    release = deps.config.release
    return commit(deps, operation, "judging", due_at=due(deps, release.warmup_s))


def _rebuild(deps: Deps, operation: Operation, serving: str) -> Operation:
    """Another revision serves than the one the restore's revision was built on (an on-call
    rollback moved it): build the restore's revision again, on that one."""
    deps.store.journal.add_event(
        operation.id,
        deps.clock.now(),
        "rebuilt",
        actor=BOT_ACTOR,
        was=operation.to_revision,
        base=serving,
    )
    operation = commit(deps, operation, rebuilt={"was": operation.to_revision, "on": serving})
    operation = again(deps, again(deps, operation, "deploy"), "smoke")
    return commit(deps, operation, "deploying", run_op="", tag_uri="")


def _serving_most(state: ServiceState) -> str:
    return max(state.serving().items(), key=lambda share: share[1])[0]


def _holds_service(deps: Deps, operation: Operation) -> bool:
    """The restore holds the service's lock, or takes it now. After it stepped aside for an
    on-call rollback, it leaves the service to that rollback until the rollback has begun
    (then the lock is the rollback's, or free once it ended): the restore never takes the
    service back in the moment between its yielding and the rollback's start."""
    holder = deps.store.operations.lock_holder(operation.service)
    if holder is not None:
        return holder.operation_id == operation.id
    yielded = RestoreData.of(operation).yielded
    if yielded is not None:
        at = datetime.fromisoformat(yielded.at)
        rollback = deps.store.operations.latest_operation(operation.service, "rollback")
        begun = rollback is not None and rollback.created_at >= at
        if not begun and (deps.clock.now() - at).total_seconds() < YIELD_GRACE_S:
            return False
    return deps.store.operations.acquire_lock(operation.service, operation.id, deps.clock.now())


def _wait_for_service(deps: Deps, operation: Operation, step: str) -> Operation:
    holder = deps.store.operations.lock_holder(operation.service)
    waiting = (
        {"kind": holder.kind, "id": holder.operation_id, "by": holder.requested_by}
        if holder is not None
        else {"kind": "rollback", "id": "", "by": ""}
    )
    return later(deps, operation, step, waiting_for=waiting)


def _step_go_back(deps: Deps, operation: Operation) -> Operation:
    """Back to the revision that served before, durably: the change's operation is committed
    before it is followed, and a change Cloud Run is slow to apply is followed on (never "failed"
    while the traffic may still be moving)."""
    if not RestoreData.of(operation).run_op:
        ref = deps.service_ref(deps.managed_service(operation.service))
        try:
            state = deps.cloudrun.get_service(ref)
            tagged = any(s.tag == RESTORE_TAG for s in state.traffic)
            if state.serving() == {operation.from_revision: 100} and not tagged:
                return _gone_back(deps, operation, state)
            targets = pinned_targets(state, operation.from_revision, drop=(RESTORE_TAG,))
            op = deps.cloudrun.start_traffic_update(ref, targets, state.etag)
        except EtagConflict:  # changed between the read and the PATCH: read it again
            return operation
        except CloudRunError as error:
            return end(deps, operation, "failed", going_back_failed=_said(error))
        audit_run(deps, operation, "go_back", op, operation.from_revision)
        operation = commit(deps, operation, run_op=op)
    back_to = {operation.from_revision: 100}
    followed = _follow_run(deps, operation, back_to, deps.config.rollback.operation_timeout_s)
    if followed.slow is not None:  # still applying: the next step follows it again
        return still_applying(deps, operation, KIND, followed.slow)
    if followed.applied is None:
        assert followed.failed is not None
        return end(deps, operation, "failed", run_op="", going_back_failed=_said(followed.failed))
    return _gone_back(deps, commit(deps, operation, run_op=""), followed.applied)


def _gone_back(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    deps.store.serving.record_serving(
        operation.service, operation.to_revision, "rolled_back_from", deps.clock.now(), operation.id
    )
    return end(deps, operation, "rolled_back", serving=state.serving())


def _follow_run(
    deps: Deps, operation: Operation, expect: dict[str, int] | None, timeout_s: float | None = None
) -> Followed:
    """The restore's Cloud Run change under way (``run_op``), followed (bot/ops/applying.py)
    for at most ``timeout_s`` (a release's operation timeout unless given)."""
    timeout = deps.config.release.operation_timeout_s if timeout_s is None else timeout_s
    return follow_change(deps, RestoreData.of(operation).run_op, expect, timeout)


def _said(error: CloudRunError) -> str:
    return error.detail or error.reason


def _database(deps: Deps, operation: Operation) -> Database:
    return resolve_database(deps, operation.service)


STEPS = {
    "approved": _step_approved,
    "creating": _step_create,
    "restoring": _step_restore,
    "checking": _step_check,
    "pointing": _step_point,
    "deploying": _step_deploy,
    "smoke": _step_smoke,
    "shifting": _step_shift,
    "judging": step_judge,
    "going_back": _step_go_back,
}
