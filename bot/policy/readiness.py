"""The runbook's rollback-readiness checklist ("Validación Pre-Production"), item by item. Pure.

Each item is a function of the evidence gathered for it (and the clock, passed in) that returns
an ``Item``: ✅ ``ok``, ⚠️ ``warn`` (works, or could not be told: look at it) or ❌ ``fail``
(blocks a production release unless a tech lead overrides it). ``why`` names the message that
explains it (``readiness.<key>.<why>`` in templates/<locale>/messages.yaml) and ``facts`` are
what that message shows. Evidence that could not be gathered is never ✅.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from bot.policy.credentials import looks_like_credential
from bot.policy.flags import Agreement, compare, flags_in_env
from bot.policy.platform import health_path_reserved
from bot.policy.targets import TargetChoice, TargetProblem, choose_target, current_revision
from bot.ports import EnvVar, ProbeResult, Revision


class Mark(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


# The checklist's items, in the runbook's order (plus the health path, Runback's addition).
ITEMS = (
    "blue",
    "revisions",
    "secrets",
    "flags",
    "backup",
    "dr_runbook",
    "acknowledged",
    "drill",
    "health",
)


@dataclass(frozen=True)
class Item:
    key: str  # one of ITEMS
    mark: Mark
    why: str  # readiness.<key>.<why>
    facts: dict[str, Any] = field(default_factory=dict)


def not_gathered(key: str, deadline_s: float) -> Item:
    """The evidence did not arrive within the deadline: never a pass."""
    return Item(key, Mark.WARN, "not_gathered", {"deadline_s": deadline_s})


def unavailable(key: str, detail: str) -> Item:
    """Gathering the evidence failed (an API down, say): never a pass."""
    return Item(key, Mark.WARN, "unavailable", {"detail": detail})


def failing(items: Sequence[Item]) -> list[Item]:
    return [item for item in items if item.mark is Mark.FAIL]


# -- blue is the last release Runback made -------------------------------------------------


@dataclass(frozen=True)
class LastChange:
    """The newest operation by which Runback put a revision at 100% (store)."""

    kind: str  # "release" | "rollback" | "flag" | "restore", or one of them + "_rolled_back"
    revision: str
    at: datetime
    operation_id: str


def blue(serving: Mapping[str, int], last: LastChange | None) -> Item:
    current = current_revision(dict(serving))
    if current is None or serving.get(current) != 100:
        return Item("blue", Mark.WARN, "split", {"serving": dict(serving)})
    facts: dict[str, Any] = {"revision": current}
    if last is None:
        return Item("blue", Mark.WARN, "no_history", facts)
    facts |= {"expected": last.revision, "at": last.at, "operation": last.operation_id}
    if last.revision != current:
        return Item("blue", Mark.FAIL, "outside", facts)
    return Item("blue", Mark.OK, f"last_{last.kind}", facts)


# -- earlier revisions are Ready and retained ----------------------------------------------


def revisions(
    all_revisions: Sequence[Revision],
    serving: Mapping[str, int],
    choice: TargetChoice | None = None,
    service: str = "",
) -> Item:
    """``all_revisions`` newest first, as Cloud Run lists them; ``choice`` where the automatic
    rollback would go (the one decision every rollback uses: bot.ops.rollback.target), by
    default the newest older Ready revision."""
    current = current_revision(dict(serving))
    now_serving = next((r for r in all_revisions if r.name == current), None)
    if now_serving is None:
        return Item("revisions", Mark.WARN, "not_serving", {"serving": dict(serving)})
    earlier = [
        r for r in all_revisions if r.created < now_serving.created and r.name != now_serving.name
    ]
    ready = [r for r in earlier if r.ready]
    facts: dict[str, Any] = {"retained": len(earlier), "ready": len(ready)}
    if choice is None:
        choice = choose_target(all_revisions, dict(serving), [], frozenset(), None)
    if choice.problem is TargetProblem.ALL_ROLLED_BACK:
        facts |= {
            "rolled_back": list(choice.rolled_back),
            "suggestion": choice.suggestion,
            "service": service,
        }
        return Item("revisions", Mark.WARN, "all_rolled_back", facts)
    if choice.revision is None or choice.problem is not None:
        if not earlier:
            return Item("revisions", Mark.FAIL, "none_retained", facts)
        return Item("revisions", Mark.FAIL, "none_ready", facts | {"previous": earlier[0].name})
    facts["target"] = choice.revision.name
    if choice.skipped:
        by_name = {r.name: r for r in all_revisions}
        previous = choice.skipped[0]
        message = by_name[previous].ready_message if previous in by_name else ""
        return Item(
            "revisions",
            Mark.WARN,
            "previous_not_ready",
            facts | {"previous": previous, "message": message},
        )
    return Item("revisions", Mark.OK, "ready", facts)


# -- secrets come from Secret Manager ------------------------------------------------------


def secrets(env: Sequence[EnvVar]) -> Item:
    """Names only, never values: the message must not show a credential."""
    plain = sorted(
        {v.name for v in env if not v.from_secret and looks_like_credential(v.name, v.value)}
    )
    from_secret = sorted({v.name for v in env if v.from_secret})
    if plain:
        return Item("secrets", Mark.FAIL, "plain", {"names": plain, "secret_names": from_secret})
    return Item("secrets", Mark.OK, "secret_manager", {"secret_names": from_secret})


# -- GET /config/flags answers and matches the FEATURE_FLAG_* environment ---------------------


def flags(env: Sequence[EnvVar], answer: Mapping[str, bool] | str) -> Item:
    """``env``: the serving revision's environment; ``answer``: the service's flags from
    ``GET /config/flags`` (bot.policy.flags.parse_answer), or why it could not be read. A flag
    the service reports but the environment does not set is its default, not a difference."""
    declared = {n: f for n, f in flags_in_env(env).items() if not f.from_secret}
    if isinstance(answer, str):
        mark = Mark.FAIL if declared else Mark.WARN
        return Item("flags", mark, "unreadable", {"detail": answer, "declared": len(declared)})
    differences = [
        {
            "name": row.name,
            "env": row.env.value if row.env else "missing",
            "service": row.answered if row.name in answer else "missing",
        }
        for row in compare(declared, answer)
        if row.agreement not in (Agreement.MATCH, Agreement.ONLY_IN_ANSWER)
    ]
    facts: dict[str, Any] = {"declared": len(declared), "served": len(answer)}
    if differences:
        return Item("flags", Mark.FAIL, "mismatch", facts | {"differences": differences})
    return Item("flags", Mark.OK, "match", facts)


# -- the newest backup is recent -----------------------------------------------------------


class NoDatabase(enum.Enum):
    """The service names no Cloud SQL database in app.yaml."""

    NO_DATABASE = "no_database"


NO_DATABASE = NoDatabase.NO_DATABASE


def backup(newest: datetime | NoDatabase | None, now: datetime, max_age_hours: float) -> Item:
    """``newest``: the newest successful backup's end time, None when there is none."""
    if newest is NO_DATABASE:
        return Item("backup", Mark.WARN, "not_configured")
    if newest is None:
        return Item("backup", Mark.FAIL, "none", {"max_hours": max_age_hours})
    assert isinstance(newest, datetime)
    age_h = (now - newest).total_seconds() / 3600
    facts = {"at": newest, "age_hours": round(age_h, 1), "max_hours": max_age_hours}
    if age_h > max_age_hours:
        return Item("backup", Mark.FAIL, "old", facts)
    return Item("backup", Mark.OK, "recent", facts)


# -- the disaster-recovery runbook was reviewed recently -----------------------------------


def dr_runbook(url: str, reviewed: date | None, today: date, max_days: int) -> Item:
    facts: dict[str, Any] = {"url": url, "reviewed": reviewed, "max_days": max_days}
    if not url:
        return Item("dr_runbook", Mark.FAIL, "missing", facts)
    if reviewed is None:
        return Item("dr_runbook", Mark.FAIL, "no_date", facts)
    days = (today - reviewed).days
    facts["days"] = days
    if days < 0:
        return Item("dr_runbook", Mark.WARN, "future", facts)
    if days > max_days:
        return Item("dr_runbook", Mark.FAIL, "stale", facts)
    return Item("dr_runbook", Mark.OK, "current", facts)


# -- the team acknowledged the rollback procedure ------------------------------------------


def acknowledged(
    posted: bool, members: Mapping[str, frozenset[str]], acked: frozenset[str]
) -> Item:
    """``members``: role -> the user ids who hold it (each must click "I've read it");
    ``acked``: who clicked on the current procedure."""
    if not posted:
        return Item("acknowledged", Mark.FAIL, "not_posted")
    roles = [
        {
            "role": role,
            "acked": len(users & acked),
            "total": len(users),
            "missing": sorted(users - acked),
        }
        for role, users in members.items()
        if users
    ]
    facts: dict[str, Any] = {"roles": roles}
    if any(row["acked"] == 0 for row in roles):
        return Item("acknowledged", Mark.FAIL, "none_of_role", facts)
    if any(row["missing"] for row in roles):
        return Item("acknowledged", Mark.WARN, "missing", facts)
    return Item("acknowledged", Mark.OK, "everyone", facts)


# -- the last drill passed recently --------------------------------------------------------


@dataclass(frozen=True)
class LastDrill:
    service: str
    at: datetime
    passed: bool
    time_to_safe_s: float | None = None


def drill(last: LastDrill | None, now: datetime, max_days: int) -> Item:
    if last is None:
        return Item("drill", Mark.FAIL, "never", {"max_days": max_days})
    days = (now - last.at).total_seconds() / 86400
    facts = {
        "service": last.service,
        "at": last.at,
        "days": int(days),
        "max_days": max_days,
        "time_to_safe_s": last.time_to_safe_s,
    }
    if not last.passed:
        return Item("drill", Mark.FAIL, "failed", facts)
    if days > max_days:
        return Item("drill", Mark.FAIL, "old", facts)
    return Item("drill", Mark.OK, "passed", facts)


# -- the health path is reachable ----------------------------------------------------------


def health_path_item(path: str, custom_domain: bool) -> Item | None:
    """Decided without a request when the path is one Cloud Run's front end keeps for itself."""
    if health_path_reserved(path) and not custom_domain:
        return Item("health", Mark.FAIL, "reserved", {"path": path})
    return None


def health(path: str, custom_domain: bool, probe: ProbeResult) -> Item:
    reserved = health_path_item(path, custom_domain)
    if reserved is not None:
        return reserved
    facts: dict[str, Any] = {"path": path, "status": probe.status, "ms": round(probe.elapsed_ms)}
    if probe.problem == "reserved_path":
        return Item("health", Mark.FAIL, "reserved", facts)
    if probe.problem in ("ingress_internal", "invoker_denied", "no_id_token"):
        return Item("health", Mark.FAIL, probe.problem, facts)
    if not probe.ok:
        return Item("health", Mark.FAIL, "fails", facts | {"detail": probe.detail[:120]})
    return Item("health", Mark.OK, "answers", facts)
