"""A rollback operation's states, the step each running state takes, and what it keeps
(``RollbackData``, its typed data)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.ops.operation_data import OperationData
from bot.store import Operation

KIND = "rollback"

RUNNING_STATES = ("approved", "shifting", "verifying")
# A rollback that ran: it moved traffic, or tried to. A request refused (busy, superseded,
# rejected, expired) never ran, so it never hides the one that did from the repeat question.
RAN_STATES = ("succeeded", "failed")


STEP_OF_STATE = {"approved": "shift", "shifting": "wait", "verifying": "verify"}

DATA_VERSION = 1


class RevisionFacts(BaseModel):
    """A revision as the rollback saw it when asked for (bot/ops/rollback/target.py
    ``revision_view``): the one it leaves, or the one it goes to. Empty when nothing served
    100% (no revision to leave)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    revision: str = ""
    image: str = ""
    age_s: float | None = None  # its age when the rollback was asked for
    ready: bool = False
    percent: int = 0  # the traffic it had then


class SkippedRevision(BaseModel):
    """A revision the runbook's choice went past because Cloud Run says it is not ready."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    revision: str
    why: str = ""  # Cloud Run's ready message


class GuardedMigration(BaseModel):
    """A shipped revision whose guarded migration the rollback would go back past
    (bot/ops/release_migrations.py ``rollback_crossing``): a person decides instead."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    revision: str
    verdict: str  # destructive | unknown
    flag: str = ""  # the feature flag that hides it ("" when none)
    flag_on: bool | None = None  # the flag on the serving revision then; None: unknown
    statements: list[dict[str, Any]] = []  # the statements that decide: line, rule, data...


class FailureFacts(BaseModel):
    """Why the rollback failed: its code, the step it failed in, and that code's facts
    (``detail``, ``serving``, ``url``, ``status``, ``checks``), which are kept as written."""

    model_config = ConfigDict(extra="allow", frozen=True)

    code: str  # the template's failure.*
    step: str = ""  # shift | wait | verify


class RecoveryOffers(BaseModel):
    """After a failed health check on the target: the buttons the failure alert offers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    previous: str = ""  # the revision that served before
    next: str = ""  # the next candidate back ("" when there is none)

    def revisions(self) -> list[str]:
        """The revisions offered, each a button."""
        return [r for r in (self.previous, self.next) if r]


class HealthVerified(BaseModel):
    """The health check that passed: where, and how many checks it took."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str
    checks: int


class RollbackData(OperationData):
    """What a rollback keeps in ``Operation.data``, typed, stored as JSON with its ``version``.
    Data written before this type has no ``version``: it is version 1, the same shape, so no
    data migration is needed (a request that lost the race for its service left ``{}``: every
    key has a default). A later shape gets the next version and ``of`` upgrades older data as
    it reads it. Keys this type does not name are not the rollback's (``seq``, the store's count
    of compare-and-set writes): read past, and left as they are by every write. The revision it
    leaves is stored as ``from``, a Python keyword: ``from_`` here. Each write goes through this
    type (``RollbackRecord``, bot/ops/rollback/record.py)."""

    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    version: int = DATA_VERSION
    # what was asked for, as it was then
    from_: RevisionFacts = Field(
        default=RevisionFacts(), validation_alias="from", serialization_alias="from"
    )
    to: RevisionFacts = RevisionFacts()
    serving_before: dict[str, int] = {}  # the traffic when asked for
    uri: str = ""  # the service's URL when asked for: the health check's
    requested_at: str | None = None  # ISO time
    automatic: bool = False  # Runback itself, for an incident, on behalf of the on-call policy
    drill: str = ""  # the drill that started it and waits for it ("" when none did)
    took_over: str = ""  # the release, flip or drill that stood aside for it
    drop_tags: list[str] = []  # the tags of that one's new revision, removed with the shift
    skipped: list[SkippedRevision] = []  # not ready: the runbook's choice went past them
    migration_guard: list[GuardedMigration] = []  # not an emergency: a person decides
    # the steps
    timings: dict[str, float] = {}  # each step that ended (shift, wait, verify), in seconds
    due_at: str | None = None  # never set (no step waits); the step loop reads it for all
    # how it ended
    health: HealthVerified | None = None  # succeeded: the health check that passed
    error: FailureFacts | None = None  # failed: why
    traffic_now: dict[str, int] | None = None  # failed: what serves, read fresh; None: unread
    offers: RecoveryOffers = RecoveryOffers()  # failed its health check: where to go instead
    superseded_by: str = ""  # cancelled: the on-call engineer's emergency rollback (its id)
    preempted_by: str = ""  # cancelled: the on-call engineer whose emergency rollback did
    preempted_reason: str = ""  # their reason


def rollback_data(operation: Operation | None) -> RollbackData:
    """The operation's data as a rollback's; empty for none, or for another kind of operation
    (an incident's answer, or the lock holder it names, may be a release or a flag flip)."""
    if operation is None or operation.kind != KIND:
        return RollbackData()
    return RollbackData.of(operation)
