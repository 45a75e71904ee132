"""Blue/green releases ("Flujo de Deployment"), as a durable state machine.

(backing_up, when the migration is destructive: the pre-deployment Cloud SQL backup) ->
deploying -> applying -> smoke -> shifting -> applying -> judging -> ... -> awaiting_approval
(100% in production) -> shifting -> applying -> judging (validation at 100%) -> finalizing ->
applying -> succeeded. Off the happy path: rolling_back -> applying -> rolled_back; a failed
smoke test untags green -> failed; paused and needs_human wait for a person.

Every Cloud Run change is one PATCH whose operation name is committed before it is awaited
(state ``applying``, with what to expect and where to go next), so a restarted bot polls the
operation instead of applying anything twice. Timed states keep their ``due_at`` in the store: a
judgement that fell due while the bot was down is made as soon as it is back.
"""

from bot.ops.release.canary import decide_full_traffic, on_decided, on_expired
from bot.ops.release.finish import fail_unexpectedly
from bot.ops.release.machine import execute
from bot.ops.release.people import pause, resume, roll_back, stand_aside
from bot.ops.release.readiness_gate import ReadinessBlocked
from bot.ops.release.request import NeedsConfirmation, next_revision_name, override, request_release
from bot.ops.release.requested import ReleaseRequest
from bot.ops.release.states import (
    FINAL_STATES,
    GREEN_TAG,
    PEOPLE_STATES,
    RUNNING_STATES,
    ReleaseData,
)
from bot.ops.release.view import refresh, release_view
from bot.ops.workflow import Workflow

__all__ = [
    "FINAL_STATES",
    "GREEN_TAG",
    "PEOPLE_STATES",
    "RUNNING_STATES",
    "WORKFLOW",
    "NeedsConfirmation",
    "ReadinessBlocked",
    "ReleaseData",
    "ReleaseRequest",
    "decide_full_traffic",
    "execute",
    "fail_unexpectedly",
    "next_revision_name",
    "on_decided",
    "on_expired",
    "override",
    "pause",
    "refresh",
    "release_view",
    "request_release",
    "resume",
    "roll_back",
    "stand_aside",
]

WORKFLOW = Workflow(
    kind="release",
    running_states=RUNNING_STATES,
    execute=execute,
    fail_unexpectedly=fail_unexpectedly,
    on_decided=on_decided,
    on_expired=on_expired,
)
