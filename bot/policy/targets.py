"""Which revision a rollback goes back to, and whether a requested one is acceptable. Pure."""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from enum import StrEnum

from bot.ports import Revision


class TargetProblem(StrEnum):
    UNKNOWN_REVISION = "unknown_revision"
    NOT_READY = "not_ready"
    ALREADY_SERVING = "already_serving"
    NO_PREVIOUS = "no_previous"
    NOT_SERVING = "not_serving"  # nothing serves 100% and no revision was named


@dataclass(frozen=True)
class TargetChoice:
    revision: Revision | None
    problem: TargetProblem | None = None
    source: str = ""  # "named", "history" or "newest_older"


def current_revision(serving: dict[str, int]) -> str | None:
    """The revision with the largest share of traffic (the 'blue' one)."""
    if not serving:
        return None
    return max(serving.items(), key=lambda item: (item[1], item[0]))[0]


def choose_target(
    revisions: Sequence[Revision],
    serving: dict[str, int],
    history: Sequence[str],
    bad: Set[str],
    named: str | None,
) -> TargetChoice:
    """Pick the rollback target.

    ``revisions`` is newest first; ``history`` is Runback's record of revisions that served
    100%, newest first; ``bad`` holds revisions already rolled back from (never a target
    unless named explicitly).
    """
    by_name = {r.name: r for r in revisions}
    current = current_revision(serving)
    if named:
        revision = by_name.get(named)
        if revision is None:
            return TargetChoice(None, TargetProblem.UNKNOWN_REVISION)
        if not revision.ready:
            return TargetChoice(revision, TargetProblem.NOT_READY)
        if serving.get(named) == 100:
            return TargetChoice(revision, TargetProblem.ALREADY_SERVING)
        return TargetChoice(revision, source="named")
    if current is None:
        return TargetChoice(None, TargetProblem.NOT_SERVING)
    for name in history:
        revision = by_name.get(name)
        if revision and revision.ready and name != current and name not in bad:
            return TargetChoice(revision, source="history")
    current_created = by_name[current].created if current in by_name else None
    for revision in revisions:
        older = current_created is None or revision.created < current_created
        if older and revision.ready and revision.name != current and revision.name not in bad:
            return TargetChoice(revision, source="newest_older")
    return TargetChoice(None, TargetProblem.NO_PREVIOUS)
