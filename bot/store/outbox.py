"""The Slack outbox: every message Runback owes a channel, staged in the store and shown by the
courier off the critical path (retried with backoff until Slack has the newest version)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, Text, bindparam, case, cast, literal, select, update
from sqlalchemy.exc import IntegrityError

from bot.database import UTCDateTime
from bot.store.models import OutboxMessage
from bot.store.repository import Repository, rows

# What a row must be to be delivered at ``now``: owed to Slack (a newer version than it shows,
# or a replaced card to correct), due, and claimed by no courier.
_DELIVERABLE = (
    (OutboxMessage.shown < OutboxMessage.version) | (OutboxMessage.stale_ts != ""),
    OutboxMessage.due_at <= bindparam("now"),
    OutboxMessage.claimed_until.is_(None) | (OutboxMessage.claimed_until < bindparam("now")),
)
# Read whenever the courier looks for work (every tick, every card): built once.
DUE = (
    select(OutboxMessage)
    .where(*_DELIVERABLE)
    .order_by(OutboxMessage.id)
    .limit(bindparam("limit", type_=Integer))
)
CLAIM = (
    update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("row_id"), *_DELIVERABLE)
    .values(claimed_until=bindparam("until"))
)


class Outbox(Repository):
    """``store.outbox``."""

    def stage_card(
        self, card: str, channel: str, message: dict[str, Any], now: datetime, thread_of: str = ""
    ) -> None:
        """Record the card's newest content; the courier shows it (a new version wins)."""
        if self._restage_card(card, message, now):
            return
        try:
            with self._session() as session:
                session.add(_outbox_row(card, channel, message, now, thread_of))
        except IntegrityError:  # another instance staged this new card first
            self._restage_card(card, message, now)

    def _restage_card(self, card: str, message: dict[str, Any], now: datetime) -> bool:
        """One UPDATE, so that a delivery's outcome committed meanwhile is never overwritten.
        The same content again is no new version: Slack is not sent a card it already shows
        (a restore's poll or a judgement's wait refreshes its card every few seconds)."""
        # JSON has no equality in PostgreSQL; both sides are SQLAlchemy's one serialisation
        same = cast(OutboxMessage.message, Text) == cast(literal(message, JSON), Text)
        with self._session() as session:
            result = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.card == card)
                .values(
                    message=message,
                    version=case((same, OutboxMessage.version), else_=OutboxMessage.version + 1),
                    updated_at=now,
                    # a card in backoff (429, outage) keeps its wait
                    due_at=case(
                        (OutboxMessage.attempts == 0, literal(now, UTCDateTime)),
                        else_=OutboxMessage.due_at,
                    ),
                )
            )
            return rows(result) == 1

    def stage_post(
        self, channel: str, message: dict[str, Any], now: datetime, thread_of: str = ""
    ) -> None:
        with self._session() as session:
            session.add(_outbox_row(None, channel, message, now, thread_of))

    def outbox_row(self, card: str) -> OutboxMessage | None:
        with self._session() as session:
            return session.scalars(select(OutboxMessage).where(OutboxMessage.card == card)).first()

    def due_outbox(self, now: datetime, limit: int = 50) -> list[OutboxMessage]:
        """Messages Slack has not seen in their newest version, due now, oldest first."""
        with self._session() as session:
            return list(session.scalars(DUE, {"now": now, "limit": limit}))

    def claim_outbox(self, row_id: int, now: datetime, until: datetime) -> OutboxMessage | None:
        """The row, if this caller won the right to deliver it until ``until`` (and it is still
        owed: another instance may have delivered it since the caller listed it)."""
        with self._session() as session:
            result = session.execute(CLAIM, {"row_id": row_id, "now": now, "until": until})
            if rows(result) != 1:
                return None
            return session.get(OutboxMessage, row_id)

    def settle_outbox(
        self, row_id: int, now: datetime, keep_claim: bool = False, **fields: Any
    ) -> None:
        """Record a delivery attempt's outcome and give up the claim (unless ``keep_claim``):
        one UPDATE, as it follows every delivery."""
        values = {**fields, "updated_at": now}
        if not keep_claim:
            values["claimed_until"] = None
        with self._session() as session:
            session.execute(update(OutboxMessage).where(OutboxMessage.id == row_id).values(values))

    def claim_telling_requester(self, card: str) -> str:
        """The requester's response_url, exactly once per card (empty if none or already told)."""
        with self._session() as session:
            result = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.card == card, OutboxMessage.told_requester.is_(False))
                .where(OutboxMessage.reply_url != "")
                .values(told_requester=True)
            )
            if rows(result) != 1:
                return ""
            row = session.scalars(select(OutboxMessage).where(OutboxMessage.card == card)).first()
            return row.reply_url if row else ""

    def set_reply_url(self, card: str, url: str) -> None:
        with self._session() as session:
            session.execute(
                update(OutboxMessage).where(OutboxMessage.card == card).values(reply_url=url)
            )


def _outbox_row(
    card: str | None, channel: str, message: dict[str, Any], now: datetime, thread_of: str
) -> OutboxMessage:
    """A message the channel is owed, due now: a card (re-rendered in place) or a one-off post."""
    return OutboxMessage(
        card=card,
        channel=channel,
        thread_of=thread_of,
        message=message,
        due_at=now,
        created_at=now,
        updated_at=now,
    )
