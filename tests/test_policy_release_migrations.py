"""The pure rules of releases and rollbacks that know their migrations, and /deploy's words."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.policy.migrations import check_migration
from bot.policy.release_migrations import (
    NO_MIGRATION,
    ShippedMigration,
    crossed,
    flag_problem,
    is_guarded,
    strictest,
    summarize,
)
from bot.slack.deploy_migration import DeployOptions, parse_deploy

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("FEATURE_FLAG_NEW_SCHEMA", None),
        ("FEATURE_FLAG_V2_1", None),
        ("", "missing"),
        ("FEATURE_FLAG_", "invalid"),
        ("feature_flag_new", "invalid"),
        ("NEW_SCHEMA", "invalid"),
        ("FEATURE_FLAG_A B", "invalid"),
        ("FEATURE_FLAG_" + "A" * 200, "invalid"),
    ],
)
def test_flag_names(name: str, problem: str | None) -> None:
    assert flag_problem(name) == problem


def test_unknown_and_destructive_are_guarded_additive_and_none_are_not() -> None:
    assert [is_guarded(v) for v in ("destructive", "unknown", "additive", NO_MIGRATION)] == [
        True,
        True,
        False,
        False,
    ]
    summary = summarize(check_migration("ALTER TABLE t ADD c int; DO $$ BEGIN END $$;"))
    assert summary.verdict == "unknown" and [s["verdict"] for s in summary.statements] == [
        "additive",
        "unknown",
    ]
    assert summarize(check_migration("-- nothing here\n")).verdict == NO_MIGRATION


def shipped(name: str, minutes: int, verdict: str = "destructive", served: bool = True):
    return ShippedMigration(name, verdict, T0 + timedelta(minutes=minutes), T0, served)


def test_a_rollback_crosses_the_shipped_guarded_revisions_newer_than_its_target() -> None:
    history = [
        shipped("r1", 10),
        shipped("r2", 20, "additive"),
        shipped("r3", 30, "unknown"),
        shipped("r4", 40, served=False),  # its release never reached 100%
        shipped("r5", 50),
    ]
    assert [m.revision for m in crossed(T0 + timedelta(minutes=15), "r1x", history)] == [
        "r3",
        "r5",
    ]
    assert crossed(T0 + timedelta(minutes=10), "r1", history)[0].revision == "r3", (
        "the target's own migration is one its code knows"
    )
    assert crossed(T0 + timedelta(minutes=60), "r6", history) == []


def test_a_revision_gone_from_cloud_run_is_placed_by_when_it_was_recorded() -> None:
    gone = ShippedMigration("r9", "destructive", None, T0 + timedelta(minutes=5), True)
    assert crossed(T0, "r0", [gone]) == [gone]
    assert crossed(T0 + timedelta(minutes=6), "r0", [gone]) == []


@pytest.mark.parametrize(
    ("text", "options"),
    [
        ("wa-backend img:1", DeployOptions("wa-backend", "img:1")),
        ("wa-backend img:1 --migration", DeployOptions("wa-backend", "img:1", True)),
        (
            "wa-backend img:1 --flag FEATURE_FLAG_X --migration",
            DeployOptions("wa-backend", "img:1", True, "FEATURE_FLAG_X"),
        ),
        (
            "wa-backend img:1 --flag=FEATURE_FLAG_X",
            DeployOptions("wa-backend", "img:1", flag="FEATURE_FLAG_X"),
        ),
        ("wa-backend", None),
        ("wa-backend img:1 extra", None),
        ("wa-backend img:1 --flag", None),
        ("wa-backend img:1 --migration --migration", None),
        ("--migration wa-backend img:1", None),
    ],
)
def test_deploy_words(text: str, options: DeployOptions | None) -> None:
    assert parse_deploy(text) == options


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ((), "none"),
        (("none", "additive"), "additive"),
        (("additive", "unknown"), "unknown"),
        (("destructive", "additive", "unknown"), "destructive"),
        (("additive", "something new"), "something new"),  # counts as unknown: never a pass
    ],
)
def test_the_strictest_verdict_stands(verdicts: tuple[str, ...], expected: str) -> None:
    assert strictest(verdicts) == expected
