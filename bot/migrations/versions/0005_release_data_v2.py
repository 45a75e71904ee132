"""Release data, version 2 (bot/ops/release/states.py ``ReleaseData``): a data migration, no
table changes. Each release operation's JSON ``data`` is rewritten from version 1 (the shape
releases wrote before the type, with no ``version``) to version 2, and back on downgrade:

- ``steps`` (the canary plan: green's percent at each step) becomes ``percents``: every other
  workflow's ``steps`` are its step marks (bot/ops/stepping.py);
- ``step_started`` (when the step's traffic was applied) becomes ``shifted_at``;
- ``approved_by`` (who approved 100%) becomes ``full_traffic_approved_by``, and the yes beside
  each approver (``full_traffic_approved``, ``migration_approved``) goes: the approver says it.

The rewrite is frozen here (the type may change again; this migration must not). The rows keep
their ``seq`` and their version-1 names beside the new ones: the previous Runback, still running
while the new one rolls out, reads and writes a release by the names it knows (a version-1 row
it writes is read by today's code as version 1: ``ReleaseData`` upgrades it as it reads it).
What it writes on a row already migrated (a step's shift, an approval) today's code does not
see, as it reads the version-2 names: at worst a step is judged from its earlier shift time and
an approval is asked again, the safe side. The downgrade writes the version-1 names from the
version-2 ones.

Revision ID: 0005_release_data_v2
Revises: 0004_drill
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005_release_data_v2"
down_revision = "0004_drill"
branch_labels = None
depends_on = None

# version 1's name -> version 2's
RENAMED = {
    "steps": "percents",
    "step_started": "shifted_at",
    "approved_by": "full_traffic_approved_by",
}
# version 1's yes beside each approver: ``{yes}_by`` names the approver
APPROVALS = ("full_traffic_approved", "migration_approved")

OPERATIONS = sa.table(
    "operations",
    sa.column("id", sa.String(32)),
    sa.column("kind", sa.String(32)),
    sa.column("data", sa.JSON()),
)


def _version(data: dict[str, Any]) -> int:
    return int(data.get("version") or 1)


def to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """A release's data in version 2 (as it is when it is not version 1). The version-1 names
    stay beside the new ones (today's code reads past them): the previous Runback, still
    running while the new one rolls out, reads a release as it always did (docs/database.md:
    migrations do not rename or drop what the previous version reads)."""
    if _version(data) != 1:
        return data
    new = {**data}
    new.update({v2: data[v1] for v1, v2 in RENAMED.items() if v1 in data})
    return {**new, "version": 2}


def to_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A release's data in version 1 (as it is when it is not version 2). Names version 2 gives
    a value by default and version 1 left out until written are left out when empty: version
    1's deploy looks for a pre-deployment backup only while ``backup`` is absent."""
    if _version(data) != 2:
        return data
    old = {k: v for k, v in data.items() if k not in RENAMED.values() and k != "version"}
    old.update({v1: data[v2] for v1, v2 in RENAMED.items() if data.get(v2) not in (None, "")})
    old.update({yes: True for yes in APPROVALS if data.get(f"{yes}_by")})
    if old.get("backup") is None:
        old.pop("backup", None)
    return old


def _rewrite(change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    connection = op.get_bind()
    query = sa.select(OPERATIONS.c.id, OPERATIONS.c.data).where(OPERATIONS.c.kind == "release")
    for row_id, data in connection.execute(query).all():
        changed = change(dict(data or {}))
        if changed != data:
            update = OPERATIONS.update().where(OPERATIONS.c.id == row_id).values(data=changed)
            connection.execute(update)


def upgrade() -> None:
    _rewrite(to_v2)


def downgrade() -> None:
    _rewrite(to_v1)
