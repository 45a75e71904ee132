"""The runbook's "Backups Pre-Deployment": before green of a release with a destructive (or
unknown) migration is deployed, a Cloud SQL backup of the service's database is due.

THE HOOK: ``before_green`` is the one place a release calls for it, right before green's deploy
PATCH. Runback does not take the backup yet: the Cloud SQL Admin adapter and the service's
databases in app.yaml come with issue #11 (``/ops backup``). Until then this records, on the
card and in the audit trail, that the backup was NOT taken by Runback, so nobody reads its
silence as a backup taken.
"""

from __future__ import annotations

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.release_migrations import release_guarded
from bot.store import Operation

NOT_TAKEN = "not_taken_by_runback"


def before_green(deps: Deps, operation: Operation) -> dict[str, str] | None:
    """Take the pre-deployment backup of a guarded release; returns what the card shows about
    it (None when no backup is due). Not built yet: see the module docstring."""
    if not release_guarded(operation):
        return None
    deps.audit(
        BOT_ACTOR,
        "release.pre_deployment_backup",
        "skipped",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        why=NOT_TAKEN,
    )
    return {"status": NOT_TAKEN}
