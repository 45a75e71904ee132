"""The release's states, the tag green wears, and what it keeps (``ReleaseData``, its typed
data)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from bot.ops.operation_data import OperationData, PendingChange, Waiting
from bot.policy.release_migrations import is_guarded

__all__ = [
    "PendingChange",
    "ReleaseBackup",
    "ReleaseData",
    "ReleaseMigration",
    "TrafficMark",
    "Waiting",
    "upgraded",
]

KIND = "release"

GREEN_TAG = "green"


MAX_STEPS_PER_RUN = 50


RUNNING_STATES = (
    "backing_up",
    "deploying",
    "applying",
    "smoke",
    "shifting",
    "judging",
    "finalizing",
    "rolling_back",
)


PEOPLE_STATES = ("awaiting_approval", "needs_human", "paused")


FINAL_STATES = ("succeeded", "rolled_back", "failed", "cancelled")

# Version 2 (bot/migrations/versions/0005_release_data_v2.py rewrote the stored rows):
# - the canary plan is ``percents`` (version 1: ``steps``, the name every other workflow gives
#   its step marks: bot/ops/stepping.py);
# - when the step's traffic was applied is ``shifted_at`` (version 1: ``step_started``, as if a
#   step mark; a flag flip calls the same moment ``shifted_at``);
# - each approval is who gave it, ``migration_approved_by`` and ``full_traffic_approved_by``
#   (version 1: a ``migration_approved`` / ``full_traffic_approved`` yes beside the approver,
#   the full-traffic one under the bare name ``approved_by``).
DATA_VERSION = 2

# The version-1 names of the keys version 2 renamed or dropped, and what became of them.
V1_RENAMED = {
    "steps": "percents",
    "step_started": "shifted_at",
    "approved_by": "full_traffic_approved_by",
}
V1_DROPPED = ("migration_approved", "full_traffic_approved")


def upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """Release data as stored at any version, in today's shape (version 1 renamed; a newer
    version as it is). A version-1 row a Runback of before 0005 wrote while the migration ran
    reads as if it had been migrated. (Version 1 wrote each approval's yes and its approver
    together: the approver alone says it.)"""
    if int(data.get("version") or 1) >= 2:
        return data
    new = {k: v for k, v in data.items() if k not in V1_RENAMED and k not in V1_DROPPED}
    for old, name in V1_RENAMED.items():
        if old in data:
            new[name] = data[old]
    return {**new, "version": 2}


class ReleaseMigration(BaseModel):
    """The migration green ships with, as registered for its image (bot/ops/release_migrations.py
    ``migration_of``), with the feature flag it hides behind."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    verdict: str  # additive | destructive | unknown
    statements: list[dict[str, Any]] = []  # each statement, its line and verdict
    dialect: str = ""  # postgres | mysql
    source: str = ""  # ci | slack
    commit: str = ""
    registered_by: str = ""
    flag: str = ""  # FEATURE_FLAG_...: off on green until the flag is flipped
    candidate: int | None = None  # the release candidate it came from


class ReleaseBackup(BaseModel):
    """The pre-deployment backup (bot/ops/release/backup.py), followed after a restart too."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: str  # running | succeeded | failed | no_database
    backup_id: str = ""
    instance: str = ""
    cloudsql: str = ""  # the Cloud SQL operation's status at the last look
    pending: dict[str, Any] | None = None  # the started backup (``PendingBackup.to_data``)
    deadline: str | None = None  # ISO time: a backup still running then has failed


class TrafficMark(BaseModel):
    """Green's traffic from a moment on: the chart's step lines and rollback marker."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    at: str  # ISO time
    percent: int
    event: str = ""  # rollback: the way back to blue


class ReleaseData(OperationData):
    """What a release keeps in ``Operation.data``, typed, stored as JSON with its ``version``.
    Data written before this type has no ``version``: it is version 1, which ``upgraded``
    renames as it is read (and bot/migrations/versions/0005_release_data_v2.py rewrote in the
    store). Keys this type does not name are not the release's (``seq``, the store's count of
    compare-and-set writes) or no longer read (a version-1 name on a row written by this code
    before the migration): read past, and left as they are by every write. Shared code writes
    some of these keys for every workflow: ``pending``, ``expected`` (bot/ops/applying.py),
    ``judgements``, ``judged_until``, ``observing_since``, ``waiting``
    (bot/ops/metrics_window.py), ``due_at``, ``outcome`` (bot/ops/stepping.py ``stand_aside``);
    each write goes through this type (bot/ops/release/record.py)."""

    version: int = DATA_VERSION
    # what was asked for
    image: str
    requested_at: str  # ISO time of the request
    staging: bool = False  # a staging service: no approval, straight to 100%
    uri: str = ""  # the service's URL when asked for
    blue_image: str = ""  # the image blue runs
    warnings: list[str] = []  # the image's (``:latest`` in production, say)
    confirmed: bool = False  # the requester clicked past those warnings
    migration: ReleaseMigration | None = None  # None: none registered for the image
    ci: bool = False  # started by CI (POST /ci/releases)
    readiness: dict[str, Any] | None = None  # the checklist on the card; None for staging
    # the canary plan and where it is
    percents: list[int]  # green's traffic at each step, in order (version 1: ``steps``)
    step: int = -1  # the index in ``percents`` of the step reached; -1: no traffic asked yet
    next_step: int | None = None  # the step an approval is asked for
    shifted_at: str | None = None  # when the step's traffic was applied (v1: ``step_started``)
    history: list[TrafficMark] = []
    # the pre-deployment backup, green, and the Cloud Run change under way
    backup: ReleaseBackup | None = None  # None: not looked at yet (the deploy decides once)
    green_uri: str = ""  # green's tag URL, once deployed
    service_uri: str = ""  # the service's URL as Cloud Run gave it with the deploy
    pending: PendingChange | None = None
    expected: dict[str, int] | None = None  # the traffic as Runback last applied it
    due_at: str | None = None  # the next look (ISO time): the step loop waits for it
    # approvals: who gave them ("" while not given)
    awaiting: str | None = None  # "migration" while the migration's approval is asked
    migration_approved_by: str = ""
    full_traffic_approved_by: str = ""  # version 1: ``approved_by``
    proceeded_by: str = ""  # who let an inconclusive step go on
    # the judgements
    judgements: list[dict[str, Any]] = []  # the newest, as metrics_window records them
    judged_until: str | None = None  # the end of the minutes the last judgement had
    observing_since: str | None = None  # data time the decision table's "observe" began
    waiting: Waiting | None = None  # for Monitoring's next minute
    inconclusive_since: str | None = None  # since when the judgements say too little
    # people, and how it ended
    paused_from: str | None = None  # the state a pause left, to go back to
    pause_reason: str | None = None  # by (a person) | out_of_band (traffic changed outside)
    paused_by: str = ""
    seen: dict[str, int] | None = None  # the traffic found changed outside Runback
    stop_requested: bool = False  # stopped before green had traffic: it ends at the next step
    outcome: dict[str, Any] | None = None  # {"code": ..., and that code's facts}

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        return upgraded(data) if isinstance(data, dict) else data

    @property
    def percent(self) -> int:
        """Green's traffic at the step reached (0 before the first)."""
        return self.percents[self.step] if 0 <= self.step < len(self.percents) else 0

    @property
    def purpose(self) -> str:
        """Why the Cloud Run change under way was sent ("" when none is)."""
        return self.pending.purpose if self.pending else ""

    @property
    def guarded(self) -> bool:
        """Its migration is destructive or unknown: a backup first, approval before traffic."""
        return self.migration is not None and is_guarded(self.migration.verdict)
