"""Releases and rollbacks that know their migrations: the workflows' side of it.

A migration reaches a release as a *candidate* (an image and its SQL, registered by CI through
``POST /ci/releases`` or attached with the ``/deploy --migration`` form); ``/deploy`` finds the
newest candidate of exactly that service and image. When green is deployed, its verdict is
recorded for the revision; a rollback reads those records to see what it would go back past.
"""

from __future__ import annotations

from typing import Any

from bot.ops.context import Deps
from bot.policy.flags import FlagName, flags_in_env, parse_flag_name
from bot.policy.migrations import Dialect, check_migration
from bot.policy.release_migrations import (
    NO_MIGRATION,
    MigrationSummary,
    ShippedMigration,
    crossed,
    deciding,
    strictest,
    summarize,
)
from bot.policy.targets import current_revision
from bot.ports import EnvVar, Revision
from bot.store import Operation
from bot.store_migrations import (
    ReleaseCandidate,
    add_candidate,
    image_candidates,
    record_revision_migration,
    revision_migrations,
)


def assess(sql: str, dialect: Dialect) -> MigrationSummary:
    return summarize(check_migration(sql, dialect))


def register_candidate(
    deps: Deps,
    *,
    service: str,
    image: str,
    sql: str,
    dialect: Dialect,
    source: str,
    by: str,
    commit: str = "",
    flag: str = "",
) -> ReleaseCandidate:
    """Judge the SQL and record the candidate (audited); nothing is deployed. A verdict weaker
    than one registered before for this image is recorded, and audited as not standing (see
    ``migration_of``)."""
    summary = assess(sql, dialect)
    before = image_candidates(deps.store, service, image)
    candidate = add_candidate(
        deps.store,
        deps.clock.now(),
        service=service,
        image=image,
        commit=commit,
        source=source,
        registered_by=by,
        dialect=dialect,
        migration_sql=sql,
        feature_flag=flag,
        verdict=summary.verdict,
        statements=list(summary.statements),
    )
    deps.audit(
        by,
        "release.candidate_registered",
        "ok",
        service=service,
        image=image[:300],
        commit=commit,
        source=source,
        verdict=summary.verdict,
        feature_flag=flag,
    )
    kept = strictest(c.verdict for c in before)
    if before and strictest((kept, summary.verdict)) != summary.verdict:
        deps.audit(
            by,
            "release.verdict_kept",
            "refused",
            service=service,
            image=image[:300],
            source=source,
            submitted=summary.verdict,
            kept=kept,
        )
    return candidate


def migration_of(deps: Deps, service: str, image: str) -> dict[str, Any] | None:
    """The migration a release of this image carries: the newest candidate's, unless an earlier
    one of the same image was judged stricter. A later submission makes a verdict stricter,
    never weaker: harmless SQL pasted into the /deploy form cannot walk the destructive
    migration CI found past the pre-deployment backup; a tech lead then approves it on the
    release's card, as any guarded migration."""
    registered = image_candidates(deps.store, service, image)
    if not registered:
        return None
    verdict = strictest(c.verdict for c in registered)
    candidate = next(c for c in registered if c.verdict == verdict)  # the newest such
    if candidate.verdict == NO_MIGRATION:  # registered without SQL
        return None
    return {
        "verdict": candidate.verdict,
        "statements": list(candidate.statements or []),
        "dialect": candidate.dialect,
        "source": candidate.source,
        "commit": candidate.commit,
        "registered_by": candidate.registered_by,
        "flag": candidate.feature_flag,
        "candidate": candidate.id,
    }


def record_green(deps: Deps, operation: Operation, migration: dict[str, Any] | None) -> None:
    """Green exists now: record the ``migration`` it ships with (``none`` without one)."""
    migration = migration or {}
    record_revision_migration(
        deps.store,
        deps.clock.now(),
        service=operation.service,
        revision=operation.to_revision,
        verdict=migration.get("verdict", NO_MIGRATION),
        feature_flag=migration.get("flag", ""),
        dialect=migration.get("dialect", ""),
        source=migration.get("source", ""),
        commit=migration.get("commit", ""),
        statements=migration.get("statements", []),
        operation_id=operation.id,
    )


def rollback_crossing(
    deps: Deps, service: str, target: Revision, revisions: list[Revision], serving: dict[str, int]
) -> list[dict[str, Any]]:
    """What a rollback to ``target`` would go back past: each shipped revision with a guarded
    migration newer than the target, with its flag and the statements that decide (their
    whys are the template's ``migration.rule.*``)."""
    records = {r.revision: r for r in revision_migrations(deps.store, service)}
    if not records:
        return []
    created = {r.name: r.created for r in revisions}
    served = set(deps.store.serving.served_revisions(service)) | {
        r for r, p in serving.items() if p
    }
    shipped = [
        ShippedMigration(
            revision=record.revision,
            verdict=record.verdict,
            created=created.get(record.revision),
            recorded_at=record.recorded_at,
            shipped=record.revision in served,
        )
        for record in records.values()
    ]
    env = _serving_env(revisions, serving)
    return [
        {
            "revision": m.revision,
            "verdict": m.verdict,
            "flag": records[m.revision].feature_flag,
            # on, off, or None (unknown): the flag as the serving revision has it now; a way
            # out that turns off a flag already off is no way out
            "flag_on": _flag_value(env, records[m.revision].feature_flag),
            "statements": deciding(records[m.revision].statements)[:5],
        }
        for m in crossed(target.created, target.name, shipped)
    ]


def _serving_env(revisions: list[Revision], serving: dict[str, int]) -> tuple[EnvVar, ...]:
    current = current_revision(serving)
    found = next((r for r in revisions if r.name == current), None)
    return found.env if found else ()


def _flag_value(env: tuple[EnvVar, ...], flag: str) -> bool | None:
    if not flag:
        return None
    parsed = parse_flag_name(flag)
    if not isinstance(parsed, FlagName):
        return None
    current = flags_in_env(env).get(parsed.name)
    return current.value if current is not None and not current.from_secret else None
