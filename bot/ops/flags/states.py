"""A flag flip's states, steps, the tag its new revision wears while it is checked, and what it
keeps (``FlagData``, its typed data)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.ops.operation_data import OperationData, PendingChange, StepMark, Waiting

__all__ = ["FlagData", "PendingChange", "StepMark", "Waiting"]

KIND = "flag"

FLAG_TAG = "flag"

MAX_STEPS_PER_RUN = 50

# deploying -> applying -> verifying -> shifting -> applying -> watching -> succeeded;
# off the happy path: untagging -> applying -> failed | cancelled (no user saw the revision),
# rolling_back -> applying -> rolled_back (100% back on the revision that served before).
RUNNING_STATES = (
    "deploying",
    "applying",
    "verifying",
    "untagging",
    "shifting",
    "watching",
    "rolling_back",
)

FINAL_STATES = ("succeeded", "rolled_back", "failed", "cancelled")

# The steps the card shows, in order, each with its time.
STEPS = ("deploy", "verify", "shift", "watch")

# States during which traffic may be changing (an emergency rollback takes them over).
TRAFFIC_STATES = ("shifting", "watching", "rolling_back", "applying")

DATA_VERSION = 1


class FlagBefore(BaseModel):
    """The flag's variable on the revision serving when the flip was asked for."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    text: str
    value: bool | None  # None: unreadable text, or a Secret Manager reference


class FlagData(OperationData):
    """What a flag flip keeps in ``Operation.data``, typed, stored as JSON with its ``version``.
    Data written before this type has no ``version``: it is version 1, the same shape (its step
    marks' ends stored as ``at`` read as ``ended``), so no data migration is needed. A later
    shape gets the next version and ``of`` upgrades older data as it reads it. Keys this type
    does not name are not the flip's (``seq``, the store's count of compare-and-set writes) or
    no longer read (``stop_requested``, of the first flips): read past, and left as they are by
    every write. Shared code writes some of these keys for every workflow: ``steps``
    (bot/ops/stepping.py), ``pending`` (bot/ops/applying.py), ``judgements``, ``judged_until``,
    ``observing_since``, ``waiting`` (bot/ops/metrics_window.py), ``due_at``; each write goes
    through this type (bot/ops/flags/record.py)."""

    version: int = DATA_VERSION
    # what was asked for
    flag: str  # NEW_CHECKOUT
    env: str  # FEATURE_FLAG_NEW_CHECKOUT
    value: bool
    text: str  # the variable's text as set: true | false
    before: FlagBefore | None = None  # None: no serving revision had the flag (`--new`)
    uri: str = ""  # the service's URL when asked for: the watch's health check
    # the steps and the Cloud Run change under way
    steps: dict[str, StepMark] = {}
    pending: PendingChange | None = None
    due_at: str | None = None  # the next look (ISO time): the step loop waits for it
    tag_uri: str = ""  # the new revision's tag URL, once deployed
    service_uri: str = ""  # the service's URL as Cloud Run gave it with the deploy
    # the watch
    shifted_at: str | None = None  # when the new revision got 100% (ISO time)
    watch_until: str | None = None  # the end of the watch (ISO time)
    judgements: list[dict[str, Any]] = []  # the newest, as metrics_window records them
    judged_until: str | None = None  # the end of the minutes the last judgement had
    observing_since: str | None = None  # data time the decision table's "observe" began
    waiting: Waiting | None = None  # for Monitoring's next minute
    # how it ended
    outcome: dict[str, Any] | None = None  # {"code": ..., and that code's facts}
    traffic_now: dict[str, int] | None = None  # what served when it ended badly, read fresh

    @property
    def purpose(self) -> str:
        """Why the Cloud Run change under way was sent ("" when none is)."""
        return self.pending.purpose if self.pending else ""
