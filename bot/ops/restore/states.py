"""A restore's states, the tag its new revision wears until it serves, and what it keeps
(``RestoreData``, its typed data).

(awaiting_approval ->) approved -> creating -> restoring -> checking -> pointing -> deploying ->
smoke -> shifting -> judging -> succeeded; going_back -> rolled_back; failed (or rejected /
expired / cancelled).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.ops.operation_data import OperationData, StepMark, Waiting

__all__ = [
    "DATA_VERSION",
    "RestoreData",
    "StepMark",
]

KIND = "restore"

RUNNING_STATES = (
    "approved",
    "creating",
    "restoring",
    "checking",
    "pointing",
    "deploying",
    "smoke",
    "shifting",
    "judging",
    "going_back",
)
FINAL_STATES = ("succeeded", "failed", "rolled_back", "rejected", "expired", "cancelled")
# Before its revision takes traffic: the restore steps aside for an emergency.
BEFORE_TRAFFIC = ("approved", "creating", "restoring", "checking", "pointing", "deploying", "smoke")
SERVING = ("shifting", "judging")  # its revision serves (or is being given the traffic)
RESTORE_TAG = "restored"

DATA_VERSION = 1


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RestoredBackup(_Part):
    """The backup restored, as ``/ops backups`` listed it when the restore was asked for."""

    id: str
    automated: bool = False
    at: str = ""  # when it ended (ISO time; "" when Cloud SQL gave no time)
    description: str = ""


class CopiedSettings(_Part):
    """What the clone copied of its original's settings, for its card
    (bot/policy/databases.py ``clone_settings_summary``)."""

    edition: str = ""
    tier: str = ""
    network: str = ""  # the private network's name ("" when none)
    public_ip: bool = True
    ssl_mode: str = ""
    flags: list[str] = []  # the database flags' names
    availability: str = ""
    disk: str = ""  # type and size in GB: PD_SSD 100
    backups: bool = False
    backups_at: str = ""  # when the daily backup starts: 03:00
    deletion_protection: bool = False


class NewVar(_Part):
    """Where the clone's URL was written: the secret's version the new revision reads."""

    secret: str  # the secret's short name (a new secret of its own when read as latest)
    version: str
    project: str


class Rebuilt(_Part):
    """Its revision built again on another: an on-call rollback moved what serves."""

    was: str  # the revision built first
    on: str  # the revision that serves now, the new one's base


class Yielded(_Part):
    """It stepped aside for an on-call engineer's /rollback before its revision served."""

    by: str  # the on-call engineer (Slack user id)
    at: str  # ISO time
    state: str  # the restore's state then
    reason: str = ""


class WaitingFor(_Part):
    """Who holds the service while the restore waits to deploy or shift (``id`` "" while an
    on-call rollback is starting)."""

    kind: str = "rollback"
    id: str = ""
    by: str = ""


class RestoreOutcome(_Part):
    """Why it went back, failed or was superseded (none of it while nothing went wrong)."""

    step: str = ""  # the step it stopped at: create ... verify, internal ("" when superseded)
    why: str = ""  # timeout, a reason, url:<problem>, asked, on_call, superseded, internal
    by: str = ""  # who asked to go back, or whose rollback superseded it
    reason: str = ""  # the on-call engineer's reason


class RestoreData(OperationData):
    """What a restore keeps in ``Operation.data``, typed, stored as JSON with its ``version``.
    Data written before this type has no ``version``: it is version 1, the same shape (keys it
    had not written yet read as their defaults), so no data migration is needed. A later shape
    gets the next version and ``of`` upgrades older data as it reads it. Keys this type does
    not name are not the restore's (``seq``, the store's count of compare-and-set writes): read
    past, and left as they are by every write. ``steps`` is written by shared code
    (bot/ops/stepping.py) and ``due_at`` read by the step loop; each write goes through this
    type (bot/ops/restore/record.py)."""

    version: int = DATA_VERSION
    # what was asked for
    project: str  # the Cloud SQL instance's project
    instance: str  # the instance the backup is of
    backup: RestoredBackup
    clone: str  # the new instance's name
    env: str  # DATABASE_URL: the variable the service reads its database's URL from
    secret: str  # the secret it reads now (short name, or projects/P/secrets/S)
    secret_version: str  # the version it reads: a number, or latest
    new_secret: bool = False  # read as latest: the clone's URL goes in a new secret
    # the steps
    steps: dict[str, StepMark] = {}
    due_at: str | None = None  # the next look (ISO time): the step loop waits for it
    # Cloud SQL: the clone, the restore into it
    create_sent: bool = False  # the clone's create was sent (its answer may have been lost)
    restore_sent: bool = False  # the restore was sent (its answer may have been lost)
    sql_op: str = ""  # the Cloud SQL operation followed ("" when none)
    sql_status: str = ""  # its PENDING | RUNNING, at the last look
    instance_state: str = ""  # the clone's state while it is not runnable (PENDING_CREATE ...)
    unreachable: str = ""  # why Cloud SQL did not say, at the last look ("" when it did)
    copied: CopiedSettings | None = None  # what the clone copied of the instance's settings
    clone_endpoint: tuple[str, tuple[str, ...]] | None = None  # connection name, IP addresses
    # Secret Manager
    new_var: NewVar | None = None
    swap: tuple[str, str] | None = None  # Cloud SQL connections: the old one, the clone's
    replaces: str = ""  # the instance the secret's URL named before (a clone, after a restore)
    # Cloud Run
    run_op: str = ""  # the Cloud Run operation followed ("" when none)
    base: str = ""  # the revision the new one is built on: what served when it was deployed
    tag_uri: str = ""  # the new revision's tag URL, once deployed
    service_uri: str = ""  # the service's URL as Cloud Run gave it with the deploy
    rebuilt: Rebuilt | None = None
    yielded: Yielded | None = None
    waiting_for: WaitingFor | None = None  # the service's lock, before deploying or shifting
    # the judgement (bot/ops/metrics_window.py, as a release's last step)
    shifted_at: str | None = None  # when the new revision got 100% (ISO time)
    judgements: list[dict[str, Any]] = []  # the newest, as metrics_window records them
    judged_until: str | None = None  # the end of the minutes the last judgement had
    observing_since: str | None = None  # data time the decision table's "observe" began
    waiting: Waiting | None = None  # for Monitoring's next minute
    last: dict[str, Any] | None = None  # the last judgement: at, verdict and its numbers
    # how it ended
    outcome: RestoreOutcome | None = None
    verified: bool | None = None  # succeeded: the metrics confirmed it (False: too few)
    going_back_failed: str = ""  # why the traffic move back failed
    serving: dict[str, int] | None = None  # what served once it went back
