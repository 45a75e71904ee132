"""Replayed Slack requests are refused by every instance (seen_requests); Slack messages go
through a durable outbox (slack_outbox).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "seen_requests",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index("ix_seen_requests_expires_at", "seen_requests", ["expires_at"])
    op.create_table(
        "slack_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("card", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("thread_of", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("stale_ts", sa.String(length=32), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("shown", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", TIMESTAMP, nullable=False),
        sa.Column("claimed_until", TIMESTAMP, nullable=True),
        sa.Column("uncertain_since", sa.String(length=32), nullable=False),
        sa.Column("error", sa.String(length=64), nullable=False),
        sa.Column("reply_url", sa.Text(), nullable=False),
        sa.Column("told_requester", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("card"),
    )
    op.create_index("ix_slack_outbox_due_at", "slack_outbox", ["due_at"])


def downgrade() -> None:
    op.drop_table("slack_outbox")
    op.drop_table("seen_requests")
