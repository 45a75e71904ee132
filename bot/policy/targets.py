"""Which revision a rollback goes back to, and whether a requested one is acceptable. Pure."""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from bot.ports import Revision


class TargetProblem(StrEnum):
    UNKNOWN_REVISION = "unknown_revision"
    NOT_READY = "not_ready"
    ALREADY_SERVING = "already_serving"
    NO_PREVIOUS = "no_previous"
    ALL_ROLLED_BACK = "all_rolled_back"  # earlier ready revisions exist, all rolled back from
    NOT_SERVING = "not_serving"  # nothing serves 100% and no revision was named


@dataclass(frozen=True)
class TargetChoice:
    revision: Revision | None
    problem: TargetProblem | None = None
    source: str = ""  # "named", "history" or "newest_older"
    skipped: tuple[str, ...] = ()  # not-ready candidates passed over to reach ``revision``
    alternative: Revision | None = None  # NOT_READY: the next ready candidate, if any
    rolled_back: tuple[str, ...] = ()  # ALL_ROLLED_BACK: those ready revisions, newest first
    suggestion: str = ""  # ALL_ROLLED_BACK: the one to offer naming (never the one just left)


def current_revision(serving: dict[str, int]) -> str | None:
    """The revision with the largest share of traffic (the 'blue' one)."""
    if not serving:
        return None
    return max(serving.items(), key=lambda item: (item[1], item[0]))[0]


def still_rolled_back(events: Sequence[tuple[str, str]]) -> list[str]:
    """Runback's serving record, ``(revision, "served" | "rolled_back_from")`` newest first,
    read as the revisions a rollback must not pick by itself: those rolled back from and not
    put back at 100% since (a person naming one in `/rollback`, or a finished release keeping it
    as its blue, says it is good again). The most recently rolled back from comes first."""
    newest: dict[str, str] = {}
    for revision, kind in events:
        newest.setdefault(revision, kind)
    return [revision for revision, kind in newest.items() if kind == "rolled_back_from"]


def within_repeat_window(
    previous_finished_at: datetime | None, now: datetime, window_minutes: float
) -> bool:
    """Whether a rollback that ended at ``previous_finished_at`` is recent enough that another
    one without a named revision must ask first (it would go one more revision back)."""
    if previous_finished_at is None or window_minutes <= 0:
        return False
    return now - previous_finished_at <= timedelta(minutes=window_minutes)


def choose_target(
    revisions: Sequence[Revision],
    serving: dict[str, int],
    history: Sequence[str],
    bad: Set[str],
    named: str | None,
    skip_not_ready: bool = True,
    just_left: str = "",
) -> TargetChoice:
    """Pick the rollback target.

    ``revisions`` is newest first; ``history`` is Runback's record of revisions that served
    100%, newest first; ``bad`` holds revisions already rolled back from (never a target
    unless named explicitly). Without a name, the candidates are the history, then every
    revision older than the current one, newest first. A candidate that is not ready is passed
    over when ``skip_not_ready`` (Runback acting alone, for an incident); otherwise it is
    NOT_READY, with the next ready candidate as the alternative a person may name.
    ``just_left`` is the revision most recently rolled back from: never offered as a suggestion.
    """
    if named:
        return _named(revisions, serving, named)
    current = current_revision(serving)
    if current is None:
        return TargetChoice(None, TargetProblem.NOT_SERVING)
    candidates = _candidates(revisions, current, history, bad)
    ready = [(r, source) for r, source in candidates if r.ready]
    if not ready:
        return _nothing_to_go_back_to(revisions, current, history, bad, just_left)
    revision, source = ready[0]
    skipped = tuple(r.name for r, _ in candidates[: candidates.index(ready[0])])
    if skipped and not skip_not_ready:
        first = candidates[0][0]
        return TargetChoice(first, TargetProblem.NOT_READY, alternative=revision)
    return TargetChoice(revision, source=source, skipped=skipped)


def _named(revisions: Sequence[Revision], serving: dict[str, int], named: str) -> TargetChoice:
    revision = next((r for r in revisions if r.name == named), None)
    if revision is None:
        return TargetChoice(None, TargetProblem.UNKNOWN_REVISION)
    if not revision.ready:
        return TargetChoice(revision, TargetProblem.NOT_READY)
    if serving.get(named) == 100:
        return TargetChoice(revision, TargetProblem.ALREADY_SERVING)
    return TargetChoice(revision, source="named")


def _candidates(
    revisions: Sequence[Revision], current: str, history: Sequence[str], bad: Set[str]
) -> list[tuple[Revision, str]]:
    """Every revision a rollback could go back to, in order of preference, ready or not."""
    by_name = {r.name: r for r in revisions}
    found: dict[str, tuple[Revision, str]] = {}
    for name in history:
        if name in by_name and name != current and name not in bad:
            found.setdefault(name, (by_name[name], "history"))
    for revision in _older_than(revisions, current):
        if revision.name not in bad:
            found.setdefault(revision.name, (revision, "newest_older"))
    return list(found.values())


def _older_than(revisions: Sequence[Revision], current: str) -> list[Revision]:
    by_name = {r.name: r for r in revisions}
    created = by_name[current].created if current in by_name else None
    return [r for r in revisions if r.name != current and (created is None or r.created < created)]


def _nothing_to_go_back_to(
    revisions: Sequence[Revision],
    current: str,
    history: Sequence[str],
    bad: Set[str],
    just_left: str,
) -> TargetChoice:
    """NO_PREVIOUS, unless ready revisions exist that were all rolled back from: say that."""
    by_name = {r.name: r for r in revisions}
    earlier = [by_name[n] for n in history if n in by_name] + _older_than(revisions, current)
    rolled_back = [r.name for r in earlier if r.ready and r.name != current and r.name in bad]
    if rolled_back:
        listed = tuple(dict.fromkeys(rolled_back))
        suggestion = next((name for name in listed if name != just_left), "")
        return TargetChoice(
            None, TargetProblem.ALL_ROLLED_BACK, rolled_back=listed, suggestion=suggestion
        )
    return TargetChoice(None, TargetProblem.NO_PREVIOUS)
