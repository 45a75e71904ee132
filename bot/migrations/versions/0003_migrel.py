"""Each revision's migration verdict (revision_migrations), and release candidates registered
by CI or attached in Slack before a release (release_candidates). Both are new tables: the
previous Runback ignores them.

Revision ID: 0003_migrel
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_migrel"
down_revision = "0002"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "revision_migrations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.String(length=128), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("feature_flag", sa.String(length=128), nullable=False),
        sa.Column("dialect", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=False),
        sa.Column("statements", sa.JSON(), nullable=False),
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("service", "revision"),
    )
    op.create_index("ix_revision_migrations_service", "revision_migrations", ["service"])
    op.create_table(
        "release_candidates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("image", sa.String(length=512), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("registered_by", sa.String(length=32), nullable=False),
        sa.Column("dialect", sa.String(length=16), nullable=False),
        sa.Column("migration_sql", sa.Text(), nullable=False),
        sa.Column("feature_flag", sa.String(length=128), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("statements", sa.JSON(), nullable=False),
        sa.Column("registered_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_release_candidates_service", "release_candidates", ["service"])


def downgrade() -> None:
    op.drop_table("release_candidates")
    op.drop_table("revision_migrations")
