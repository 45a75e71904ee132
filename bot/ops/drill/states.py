"""A drill's states, the tag its test revision wears, and what it keeps (``DrillData``, its
typed data).

deploying -> deploy_applying -> verifying -> rolling_back -> waiting_rollback ->
checking_metrics -> succeeded (the drill passed) or failed.
"""

from __future__ import annotations

from typing import Any, Literal

from bot.ops.operation_data import OperationData

KIND = "drill"
DRILL_TAG = "drill"
RUNNING_STATES = (
    "deploying",
    "deploy_applying",
    "verifying",
    "rolling_back",
    "waiting_rollback",
    "checking_metrics",
)

# The drill holds the service's lock in these states (its rollback holds it while it runs).
HOLDING_STATES = ("deploying", "deploy_applying", "verifying", "rolling_back")

DATA_VERSION = 1


class DrillData(OperationData):
    """What a drill operation keeps in ``Operation.data``, typed, stored as JSON with its
    ``version``. Data written before this type has no ``version``: it is version 1, the same
    shape (so no migration of stored rows). A later shape gets the next version and ``of``
    upgrades older data as it reads it. Keys this type does not name are not a drill's
    (``seq``, the store's count of compare-and-set writes): read past, and left as they are by
    every write. (A rollback a drill started keeps the drill's id as its own ``drill`` key:
    that is the rollback's data, not this.)"""

    version: int = DATA_VERSION
    requested_at: str  # ISO time of the request
    trigger: Literal["command", "schedule"] = "command"
    drill_id: str = ""  # its record in the drill history (bot/store/drills.py)
    blue: str = ""  # the revision serving 100% before the drill: what it rolls back to
    image: str = ""  # blue's image, which the test revision runs
    uri: str = ""  # the service's run.app URL, as Cloud Run answered
    started_at: str | None = None  # ISO time the test revision's deploy was sent
    pending: str = ""  # the Cloud Run operation of the deploy being applied ("" when none)
    stop_requested: bool = False  # an on-call engineer asked it back while the deploy applied
    # one entry a step: {"at", "step", "ok", "s"} and that step's facts (revision, uri,
    # status, path, to, rollback)
    log: list[dict[str, Any]] = []
    # why it failed, or stood aside: {"code", ...facts (detail, serving, status, path, by,
    # reason)}; None while nothing went wrong
    outcome: dict[str, Any] | None = None
    rollback_id: str = ""  # the production rollback it started
    time_to_safe_s: float | None = None  # from that rollback's start to its end
    due_at: str | None = None  # the next look (ISO time): the step loop waits for it
