"""Rollback readiness: the drill history (drills), the rollback procedure Runback posted
(procedure_posts) and who acknowledged it (procedure_acks).

Revision ID: 0004_drill
Revises: 0003_migrel
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_drill"
down_revision = "0003_migrel"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "drills",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.String(length=160), nullable=True),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("operation_id", sa.String(length=32), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("time_to_safe_s", sa.Float(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slot"),
    )
    op.create_index("ix_drills_service", "drills", ["service"])
    op.create_index("ix_drills_outcome", "drills", ["outcome"])
    op.create_index("ix_drills_started_at", "drills", ["started_at"])
    op.create_table(
        "procedure_posts",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("posted_by", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("posted_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "procedure_acks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version", "user_id"),
    )
    op.create_index("ix_procedure_acks_version", "procedure_acks", ["version"])


def downgrade() -> None:
    op.drop_table("procedure_acks")
    op.drop_table("procedure_posts")
    op.drop_table("drills")
