"""/ops check: gather the evidence of the rollback-readiness checklist, concurrently and within a
deadline, and judge each item by bot/policy/readiness. An item whose evidence is not in by the
deadline is ⚠️ "not gathered in time", never ✅.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from bot.config import ServiceConfig
from bot.ops.backups import recent_backups
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.procedure import acknowledgements
from bot.ops.rollback.target import next_target
from bot.policy import readiness
from bot.policy.databases import finished_at, newest_successful
from bot.policy.readiness import ITEMS, NO_DATABASE, Item, LastChange, LastDrill, NoDatabase
from bot.policy.redact import without_addresses
from bot.ports import CloudRunError, Message, Revision, ServiceState
from bot.render import when

log = logging.getLogger("runback.readiness")


def check_message(deps: Deps, name: str) -> Message:
    """The answer to ``/ops check SERVICE``."""
    service = deps.config.service(name)
    if service is None:
        raise UserError("error.unknown_service", service=name, known=deps.config.service_names)
    items = gather_checklist(deps, service)
    return deps.renderer.message("readiness_check", service=name, **checklist_view(items))


def checklist_view(items: list[Item]) -> dict[str, Any]:
    """Plain data for the templates (and an operation's stored data): the items, and how many
    of each mark."""
    marks = [item.mark.value for item in items]
    return {
        "items": [
            asdict(item) | {"mark": item.mark.value, "facts": _json_safe(item.facts)}
            for item in items
        ],
        "failures": marks.count("fail"),
        "warnings": marks.count("warn"),
    }


def _json_safe(value: Any) -> Any:
    """Facts as they can be stored (an operation's data is JSON) and shown: times as text."""
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    return value


def gather_checklist(deps: Deps, service: ServiceConfig) -> list[Item]:
    """Every item of the checklist, in order. Evidence is gathered in parallel; what is not in
    within ``readiness.deadline_s`` is ⚠️ with that said."""
    deadline_s = deps.config.readiness.deadline_s
    deadline = time.monotonic() + deadline_s
    now = deps.clock.now()
    pool = ThreadPoolExecutor(max_workers=len(ITEMS) + 2, thread_name_prefix="runback-check")
    try:
        state = pool.submit(_read_state, deps, service)
        revisions = pool.submit(_read_revisions, deps, service)
        work = _item_work(deps, service, now, state, revisions)
        futures = {key: pool.submit(_safely, key, work[key]) for key in ITEMS}
        items = []
        for key in ITEMS:
            try:
                items.append(futures[key].result(timeout=max(0.0, deadline - time.monotonic())))
            except FutureTimeout:
                items.append(readiness.not_gathered(key, deadline_s))
        return items
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _item_work(
    deps: Deps,
    service: ServiceConfig,
    now: datetime,
    state: Future[ServiceState],
    revisions: Future[list[Revision]],
) -> dict[str, Callable[[], Item]]:
    settings = deps.config.readiness

    def serving() -> dict[str, int]:
        return state.result().serving()

    return {
        "blue": lambda: readiness.blue(serving(), _last_change(deps, service.name)),
        "revisions": lambda: readiness.revisions(
            revisions.result(),
            serving(),
            next_target(deps, service.name, revisions.result(), serving()),
            service.name,
        ),
        "secrets": lambda: readiness.secrets(_serving_revision(serving(), revisions).env),
        "flags": lambda: _flags_item(deps, service, state, revisions),
        "backup": lambda: readiness.backup(
            newest_backup(deps, service), now, deps.config.backups.max_age_hours
        ),
        "dr_runbook": lambda: readiness.dr_runbook(
            deps.config.disaster_recovery.url,
            deps.config.disaster_recovery.reviewed_on,
            now.date(),
            settings.dr_review_days,
        ),
        "acknowledged": lambda: readiness.acknowledged(*acknowledgements(deps)),
        "drill": lambda: readiness.drill(_last_drill(deps), now, settings.drill_max_age_days),
        "health": lambda: _health_item(deps, service, state),
    }


def _safely(key: str, work: Callable[[], Item]) -> Item:
    """An item whose evidence could not be read is ⚠️ with the reason (addresses hidden)."""
    try:
        return work()
    except CloudRunError as error:
        return readiness.unavailable(key, without_addresses(error.detail or error.reason))
    except Exception as error:
        log.exception("readiness item %s could not be gathered", key)
        return readiness.unavailable(key, type(error).__name__)


def _read_state(deps: Deps, service: ServiceConfig) -> ServiceState:
    return deps.cloudrun.get_service(deps.service_ref(service))


def _read_revisions(deps: Deps, service: ServiceConfig) -> list[Revision]:
    return deps.cloudrun.list_revisions(deps.service_ref(service))


def _serving_revision(serving: dict[str, int], revisions: Future[list[Revision]]) -> Revision:
    """The revision with the largest share (blue)."""
    current = max(serving.items(), key=lambda item: (item[1], item[0]))[0] if serving else ""
    found = next((r for r in revisions.result() if r.name == current), None)
    if found is None:
        raise CloudRunError("not_serving", "no revision serves traffic")
    return found


def _last_change(deps: Deps, service: str) -> LastChange | None:
    operation = deps.store.operations.last_change(service)
    if operation is None or operation.finished_at is None:
        return None
    if operation.state == "rolled_back":  # a release, flip or restore taken back: 100% before it
        kind = f"{operation.kind}_rolled_back"
        return LastChange(kind, operation.from_revision, operation.finished_at, operation.id)
    return LastChange(operation.kind, operation.to_revision, operation.finished_at, operation.id)


def _flags_item(
    deps: Deps,
    service: ServiceConfig,
    state: Future[ServiceState],
    revisions: Future[list[Revision]],
) -> Item:
    env = _serving_revision(state.result().serving(), revisions).env
    base = (service.url or state.result().uri).rstrip("/")
    audience = state.result().uri.rstrip("/") if service.requires_auth else None
    timeout = deps.config.rollback.health_check_timeout_s
    answer = deps.service_config.flags(base, timeout, audience=audience)
    if answer.flags is None:
        why = answer.detail or answer.problem or "unreadable"
        return readiness.flags(env, without_addresses(why))
    return readiness.flags(env, answer.flags)


def newest_backup(deps: Deps, service: ServiceConfig) -> datetime | NoDatabase | None:
    """When the newest successful Cloud SQL backup of the service's database finished; None
    when it has none; NO_DATABASE when app.yaml names no database for it. Raises (UserError)
    when Cloud SQL cannot be read: the item is then "could not be checked", never ✅."""
    if service.database is None:
        return NO_DATABASE
    newest = newest_successful(recent_backups(deps, service.name))
    return finished_at(newest) if newest else None


def _last_drill(deps: Deps) -> LastDrill | None:
    done = deps.store.drills.drills(outcomes=("passed", "failed"), limit=1)
    if not done:
        return None
    record = done[0]
    return LastDrill(
        record.service,
        record.finished_at or record.started_at,
        record.outcome == "passed",
        record.time_to_safe_s,
    )


def _health_item(deps: Deps, service: ServiceConfig, state: Future[ServiceState]) -> Item:
    from bot.ops.health import probe_health

    reserved = readiness.health_path_item(service.health_path, bool(service.url))
    if reserved is not None:
        return reserved  # no request needed: Cloud Run's front end keeps the path
    _, result = probe_health(deps, service, state.result().uri)
    return readiness.health(service.health_path, bool(service.url), result)
