"""Approval requests: asked for an operation, decided once by the first valid click, or
expired. (A decision together with its operation's next state: Store.decide_and_move.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update

from bot.store.models import ApprovalRequest
from bot.store.repository import Repository, rows


@dataclass(frozen=True)
class Decided:
    status: str  # approved | rejected | cancelled
    by: str


# Read on every tick (and at every step of the sandbox's `wait`): built once.
FIRST_EXPIRY = select(func.min(ApprovalRequest.expires_at)).where(
    ApprovalRequest.status == "pending"
)
EXPIRED_BY = select(ApprovalRequest).where(
    ApprovalRequest.status == "pending", ApprovalRequest.expires_at <= bindparam("now")
)


class Approvals(Repository):
    """``store.approvals``."""

    def create_approval(self, now: datetime, **fields: Any) -> ApprovalRequest:
        approval = ApprovalRequest(created_at=now, status="pending", **fields)
        with self._session() as session:
            session.add(approval)
        return approval

    def approval(self, approval_id: str) -> ApprovalRequest | None:
        with self._session() as session:
            return session.get(ApprovalRequest, approval_id)

    def approval_for(self, operation_id: str) -> ApprovalRequest | None:
        with self._session() as session:
            query = select(ApprovalRequest).where(ApprovalRequest.operation_id == operation_id)
            return session.scalars(query.order_by(ApprovalRequest.created_at.desc())).first()

    def decide_approval(
        self, approval_id: str, status: str, decided_by: str, now: datetime
    ) -> bool:
        """Atomically move a pending, unexpired approval to ``status``; True for the one winner."""
        with self._session() as session:
            result = session.execute(
                update(ApprovalRequest)
                .where(
                    ApprovalRequest.id == approval_id,
                    ApprovalRequest.status == "pending",
                    ApprovalRequest.expires_at > now,
                )
                .values(status=status, decided_by=decided_by, decided_at=now)
            )
            return rows(result) == 1

    def next_approval_expiry(self) -> datetime | None:
        """When the first pending approval expires; None when none is pending."""
        with self._session() as session:
            return session.scalar(FIRST_EXPIRY)

    def expire_approvals(self, now: datetime) -> list[ApprovalRequest]:
        """Mark every pending approval past its deadline expired; returns those it changed."""
        with self._session() as session:
            due = list(session.scalars(EXPIRED_BY, {"now": now}))
            expired = []
            for approval in due:
                result = session.execute(
                    update(ApprovalRequest)
                    .where(ApprovalRequest.id == approval.id, ApprovalRequest.status == "pending")
                    .values(status="expired", decided_at=now)
                )
                if rows(result) == 1:
                    expired.append(approval)
            return expired
