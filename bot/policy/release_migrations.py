"""What a migration means for a release and for a rollback, as pure functions over plain data.

- A release whose migration is destructive or unknown is *guarded*: a tech lead approves it
  before green gets any traffic, and it names the feature flag (``FEATURE_FLAG_...``) that hides
  the new code, deployed off. Unknown is never a pass.
- A rollback *crosses* a revision when it goes back to a revision older than one that shipped a
  guarded migration: the old code would run on a schema it does not know.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.policy.migrations import Finding, Verdict, worst

FLAG_NAME = re.compile(r"FEATURE_FLAG_[A-Z0-9_]+")
FLAG_MAX = 128
NO_MIGRATION = "none"  # a release that carried no migration
GUARDED = frozenset({str(Verdict.DESTRUCTIVE), str(Verdict.UNKNOWN)})
STATEMENT_CHARS = 500  # each statement as recorded (the whole SQL stays with the candidate)


def flag_problem(name: str) -> str | None:
    """Why ``name`` is not a feature flag's name (None when it is one)."""
    if not name:
        return "missing"
    if len(name) > FLAG_MAX or not FLAG_NAME.fullmatch(name):
        return "invalid"
    return None


def is_guarded(verdict: str) -> bool:
    return verdict in GUARDED


# How much a verdict asks of a release: none < additive < unknown < destructive.
STRICTNESS = {
    NO_MIGRATION: 0,
    str(Verdict.ADDITIVE): 1,
    str(Verdict.UNKNOWN): 2,
    str(Verdict.DESTRUCTIVE): 3,
}


def strictest(verdicts: Iterable[str]) -> str:
    """The verdict that asks the most of a release (unknown values count as unknown)."""
    unknown = STRICTNESS[str(Verdict.UNKNOWN)]
    return max(verdicts, key=lambda v: STRICTNESS.get(v, unknown), default=NO_MIGRATION)


@dataclass(frozen=True)
class MigrationSummary:
    verdict: str  # additive | destructive | unknown
    statements: tuple[dict[str, Any], ...]  # {line, statement, verdict, rule, data, warnings}


def summarize(findings: Sequence[Finding]) -> MigrationSummary:
    """The verdict that decides and each statement as plain data (for the store and cards).
    SQL with no statement at all (empty, or only comments) is no migration: ``none``."""
    if not findings:
        return MigrationSummary(NO_MIGRATION, ())
    statements = tuple(
        {
            "line": f.line,
            "statement": f.statement[:STATEMENT_CHARS],
            "verdict": str(f.verdict),
            "rule": f.rule,
            "data": dict(f.data),
            "warnings": list(f.warnings),
        }
        for f in findings
    )
    return MigrationSummary(str(worst(f.verdict for f in findings)), statements)


def deciding(statements: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The statements that make a migration guarded (destructive or unknown), in order."""
    return [s for s in statements if s.get("verdict") in GUARDED]


@dataclass(frozen=True)
class ShippedMigration:
    """A revision and the migration verdict Runback recorded for it."""

    revision: str
    verdict: str
    created: datetime | None  # from Cloud Run; None when the revision no longer exists
    recorded_at: datetime
    shipped: bool  # it served (Runback's history) or serves now


def crossed(
    target_created: datetime, target: str, migrations: Iterable[ShippedMigration]
) -> list[ShippedMigration]:
    """The shipped revisions with a guarded migration that a rollback to ``target`` (created at
    ``target_created``) would go back past, oldest first. A revision that never served (its
    release was rolled back before 100%) shipped nothing: blue served beside it all along."""
    past = [
        m
        for m in migrations
        if m.shipped
        and m.revision != target
        and is_guarded(m.verdict)
        and (m.created or m.recorded_at) > target_created
    ]
    return sorted(past, key=lambda m: m.created or m.recorded_at)
