"""Pure tables for issue 7's `/rollback` rules: reading the second word against the real
revisions, the repeat window, and target choice when a candidate is not ready or every earlier
one was rolled back from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.policy.revision_words import (
    WordKind,
    closest_revisions,
    looks_like_revision,
    read_revision_word,
)
from bot.policy.targets import (
    TargetProblem,
    choose_target,
    still_rolled_back,
    within_repeat_window,
)
from bot.ports import Revision

SERVICE = "wa-backend"
MANAGED = ("wa-backend", "wa-backend-staging", "payments")
REVS = ("wa-backend-00003", "wa-backend-00002", "wa-backend-00001")
GENERATED = ("wa-backend-00004-xk2", "wa-backend-00003-p9q", "wa-backend-00002-abc")


@pytest.mark.parametrize(
    ("word", "revisions", "kind", "revision", "owner", "suggestions"),
    [
        # exactly a revision
        ("wa-backend-00001", REVS, WordKind.REVISION, "wa-backend-00001", "", ()),
        ("wa-backend-00003-p9q", GENERATED, WordKind.REVISION, "wa-backend-00003-p9q", "", ()),
        # the short form
        ("00001", REVS, WordKind.REVISION, "wa-backend-00001", "", ()),
        ("00003", GENERATED, WordKind.REVISION, "wa-backend-00003-p9q", "", ()),
        (
            "00004",
            ("wa-backend-00004-xk2", "wa-backend-00004"),
            WordKind.AMBIGUOUS,
            "",
            "",
            ("wa-backend-00004-xk2", "wa-backend-00004"),
        ),
        ("1", REVS, WordKind.UNKNOWN, "", "", ("wa-backend-00001",)),
        (
            "00009",
            REVS,
            WordKind.UNKNOWN,
            "",
            "",
            ("wa-backend-00003", "wa-backend-00002", "wa-backend-00001"),
        ),
        # typos, case, a missing digit
        ("wa-backnd-00001", REVS, WordKind.UNKNOWN, "", "", ("wa-backend-00001",)),
        ("WA-BACKEND-00001", REVS, WordKind.UNKNOWN, "", "", ("wa-backend-00001",)),
        ("wa-backend-0001", REVS, WordKind.UNKNOWN, "", "", ("wa-backend-00001",)),
        ("wa-backend00002", REVS, WordKind.UNKNOWN, "", "", ("wa-backend-00002",)),
        ("wa-backend-00003-p9", GENERATED, WordKind.UNKNOWN, "", "", ("wa-backend-00003-p9q",)),
        ("backend-00002", REVS, WordKind.UNKNOWN, "", "", ("wa-backend-00002",)),
        ("wa-backend-canary", REVS, WordKind.UNKNOWN, "", "", ()),
        # another managed service's revision
        ("wa-backend-staging-00001", REVS, WordKind.OTHER_SERVICE, "", "wa-backend-staging", ()),
        ("payments-00007", REVS, WordKind.OTHER_SERVICE, "", "payments", ()),
        # reasons, digits and all
        ("errors", REVS, WordKind.REASON, "", "", ()),
        ("10:30", REVS, WordKind.REASON, "", "", ()),
        ("v1.2.0", REVS, WordKind.REASON, "", "", ()),
        ("500s", REVS, WordKind.REASON, "", "", ()),
        ("backend", REVS, WordKind.REASON, "", "", ()),
        ("checkout-v2", REVS, WordKind.REASON, "", "", ()),
        ("INC-", REVS, WordKind.REASON, "", "", ()),
        ("١٢٣", REVS, WordKind.REASON, "", "", ()),  # non-ASCII digits are not a revision number
    ],
)
def test_read_revision_word(
    word: str,
    revisions: tuple[str, ...],
    kind: WordKind,
    revision: str,
    owner: str,
    suggestions: tuple[str, ...],
) -> None:
    reading = read_revision_word(word, SERVICE, list(revisions), MANAGED)
    assert (reading.kind, reading.revision, reading.owner) == (kind, revision, owner)
    assert reading.suggestions == suggestions


def test_the_services_own_revision_wins_over_a_longer_service_prefix() -> None:
    revisions = ["wa-backend-staging-00001"]  # a chosen name that happens to look like staging's
    reading = read_revision_word("wa-backend-staging-00001", SERVICE, revisions, MANAGED)
    assert (reading.kind, reading.revision) == (WordKind.REVISION, "wa-backend-staging-00001")


def test_a_staging_revision_read_for_staging_is_its_own() -> None:
    staging = ["wa-backend-staging-00002", "wa-backend-staging-00001"]
    reading = read_revision_word("wa-backend-00001", "wa-backend-staging", staging, MANAGED)
    assert (reading.kind, reading.owner) == (WordKind.OTHER_SERVICE, "wa-backend")


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("wa-backend-anything", True),
        ("x-12", True),
        ("42", True),
        ("wa-bakcend-00002", True),
        ("Wa-Backend-00002", True),
        ("rollback", False),
        ("v1.2.0", False),
        ("errors-since-10:30", False),
        ("", False),
    ],
)
def test_looks_like_revision(word: str, expected: bool) -> None:
    assert looks_like_revision(word, SERVICE, list(REVS)) is expected


def test_closest_revisions_are_best_first_and_only_the_close_ones() -> None:
    assert closest_revisions("wa-backend-00002x", list(REVS)) == ("wa-backend-00002",)
    assert closest_revisions("zzz", list(REVS)) == ()
    assert closest_revisions("anything", []) == ()


# -- the repeat window ------------------------------------------------------------------------

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("finished", "now", "window", "expected"),
    [
        (T0, T0 + timedelta(minutes=1), 15, True),
        (T0, T0 + timedelta(minutes=15), 15, True),
        (T0, T0 + timedelta(minutes=15, seconds=1), 15, False),
        (T0, T0 + timedelta(minutes=1), 0, False),  # 0 turns the question off
        (None, T0, 15, False),  # the previous rollback has not ended
        (T0, T0 + timedelta(hours=2), 180, True),
    ],
)
def test_within_repeat_window(
    finished: datetime | None, now: datetime, window: float, expected: bool
) -> None:
    assert within_repeat_window(finished, now, window) is expected


# -- target choice: readiness and "all rolled back from" ------------------------------------------


def rev(n: int, ready: bool = True, why: str = "") -> Revision:
    return Revision(f"r{n}", f"img:{n}", T0 + timedelta(hours=n), ready, why)


def revisions(*numbers: int, not_ready: tuple[int, ...] = ()) -> list[Revision]:
    return [rev(n, n not in not_ready) for n in sorted(numbers, reverse=True)]


@pytest.mark.parametrize(
    ("revs", "history", "bad", "skip", "expected"),
    [
        # Runback alone (an incident) passes over what is not ready, and says which
        (revisions(1, 2, 3, 4, 5, not_ready=(4,)), [], set(), True, ("r3", None, ("r4",), "")),
        (
            revisions(1, 2, 3, 4, 5, not_ready=(4, 3)),
            [],
            set(),
            True,
            ("r2", None, ("r4", "r3"), ""),
        ),
        (
            revisions(1, 2, 3, 4, 5, not_ready=(4,)),
            ["r4", "r1"],
            set(),
            True,
            ("r1", None, ("r4",), ""),
        ),
        # a person is told, with the next ready one as the alternative
        (
            revisions(1, 2, 3, 4, 5, not_ready=(4,)),
            [],
            set(),
            False,
            ("r4", TargetProblem.NOT_READY, (), "r3"),
        ),
        (
            revisions(1, 2, 3, 4, 5, not_ready=(4, 3, 2, 1)),
            [],
            set(),
            False,
            (None, TargetProblem.NO_PREVIOUS, (), ""),
        ),
        (revisions(1, 2, 3, 4, 5), [], set(), False, ("r4", None, (), "")),
        (revisions(1, 2, 3, 4, 5, not_ready=(3,)), [], set(), False, ("r4", None, (), "")),
        # every earlier ready revision was rolled back from: said as such
        (
            revisions(1, 2, 3, 4, 5),
            [],
            {"r4", "r3", "r2", "r1"},
            False,
            (None, TargetProblem.ALL_ROLLED_BACK, (), ""),
        ),
        (
            revisions(1, 2, 3, 4, 5, not_ready=(1,)),
            [],
            {"r4", "r3", "r2"},
            True,
            (None, TargetProblem.ALL_ROLLED_BACK, (), ""),
        ),
        (
            revisions(1, 2, 3, 4, 5, not_ready=(4, 3, 2, 1)),
            [],
            {"r4"},
            True,
            (None, TargetProblem.NO_PREVIOUS, (), ""),
        ),
    ],
)
def test_choose_target_readiness(
    revs: list[Revision],
    history: list[str],
    bad: set[str],
    skip: bool,
    expected: tuple[str | None, TargetProblem | None, tuple[str, ...], str],
) -> None:
    choice = choose_target(revs, {"r5": 100}, history, bad, None, skip_not_ready=skip)
    alternative = choice.alternative.name if choice.alternative else ""
    name = choice.revision.name if choice.revision else None
    assert (name, choice.problem, choice.skipped, alternative) == expected


def test_all_rolled_back_lists_them_newest_first() -> None:
    choice = choose_target(revisions(1, 2, 3), {"r3": 100}, ["r2"], {"r2", "r1"}, None)
    assert (choice.problem, choice.rolled_back) == (TargetProblem.ALL_ROLLED_BACK, ("r2", "r1"))


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([], []),
        # rolled back from, then named back: good again
        ([("r3", "served"), ("r2", "rolled_back_from"), ("r3", "rolled_back_from")], ["r2"]),
        # a release kept r3 as its blue: good again
        ([("r4", "served"), ("r3", "served"), ("r3", "rolled_back_from")], []),
        # most recently rolled back from first
        ([("r1", "rolled_back_from"), ("r2", "rolled_back_from"), ("r1", "served")], ["r1", "r2"]),
    ],
)
def test_still_rolled_back_reads_the_record_newest_first(
    events: list[tuple[str, str]], expected: list[str]
) -> None:
    assert still_rolled_back(events) == expected


def test_all_rolled_back_never_suggests_the_revision_just_left() -> None:
    choice = choose_target(
        revisions(1, 2, 3), {"r3": 100}, ["r3", "r1", "r2"], {"r2", "r1"}, None, just_left="r1"
    )
    assert (choice.problem, choice.suggestion) == (TargetProblem.ALL_ROLLED_BACK, "r2")
    alone = choose_target(revisions(1, 2), {"r2": 100}, ["r1"], {"r1"}, None, just_left="r1")
    assert (alone.problem, alone.suggestion) == (TargetProblem.ALL_ROLLED_BACK, "")
