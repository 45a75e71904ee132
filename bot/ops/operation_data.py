"""The typed data every workflow keeps in ``Operation.data``: one base (``OperationData``: a
``version``, read with ``of``, changed with ``changed``, stored as plain JSON with ``stored``)
and the parts shared code writes for every workflow (step marks, the Cloud Run change under way,
the wait for Monitoring's next minute).

Data written before a workflow had its type has no ``version``: it is read as version 1. A later
shape gets the next version, and its type's ``of`` upgrades older data as it reads it (or an
Alembic data migration rewrites the rows, bot/migrations/versions). Keys a type does not name
(``seq``, the store's count of compare-and-set writes; keys no longer read) are read past and
left as they are by every write: ``Record.commit`` merges the changes into the stored row."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from bot.store import Operation


class OperationData(BaseModel):
    """The base of each workflow's typed data (``BackupData``, ``DrillData``, ``FlagData``,
    ``ReleaseData``, ``RollbackData``, ``RestoreData``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    version: int = 1

    @classmethod
    def of(cls, operation: Operation) -> Self:
        """The operation's data as this type (ValidationError when it is not this workflow's)."""
        return cls.model_validate(operation.data or {})

    def changed(self, **changes: Any) -> Self:
        """This data with ``changes``, validated as the type."""
        return self.model_validate({**self.model_dump(), **changes})

    def stored(self) -> dict[str, Any]:
        """As stored: plain JSON."""
        return self.model_dump(mode="json")


class StepMark(BaseModel):
    """One step the card shows with its time (bot/ops/stepping.py ``step_started`` and
    ``step_ended`` write it). Its end was stored as ``at`` before those were shared, as
    ``ended`` since: both read as ``ended``. The notes ``step_ended`` may add are kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: str = "pending"  # running | done | failed
    started: str | None = None  # ISO time
    ended: str | None = Field(default=None, validation_alias=AliasChoices("ended", "at"))
    s: float | None = None  # how long it took, in seconds, once it ended


class PendingChange(BaseModel):
    """The Cloud Run change sent and not yet seen applied (bot/ops/applying.py writes it): its
    operation's name, what follows once applied, why it was sent, the traffic it asks for."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    op: str
    then: str  # the state that follows once it is applied
    purpose: str  # deploy | untag | shift | rollback ...
    expect: dict[str, int] = {}


class Waiting(BaseModel):
    """Nothing new to judge: what the card says the watch waits for (bot/ops/metrics_window.py
    ``Decision.waiting_facts``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    since: str | None = None  # ISO time
    newest: str | None = None  # the end of the newest minute Monitoring shows (ISO time)
    behind_s: float | None = None


def moment(text: str | None) -> datetime | None:
    """A moment the data keeps as ISO 8601 text (``shifted_at``, ``judged_until``...), or None."""
    return datetime.fromisoformat(text) if text else None
