"""The rollback workflow, as a durable state machine.

States: awaiting_approval -> approved -> shifting -> verifying -> succeeded
        (or failed / rejected / expired / cancelled).

Each step commits its result before the next starts. A restarted bot resumes from the state it
finds: ``approved`` re-reads the service (and skips the PATCH if traffic is already there),
``shifting`` polls the long-running operation it recorded rather than sending a second PATCH,
``verifying`` probes again.
"""

from bot.ops.rollback.machine import execute
from bot.ops.rollback.people import decide, on_decided, on_expired, yield_to
from bot.ops.rollback.record import check_recovery_offer, fail_unexpectedly
from bot.ops.rollback.repeat import check_repeat_still_current
from bot.ops.rollback.request import authorize_request, create_rollback
from bot.ops.rollback.requested import RepeatNeedsConfirmation, RollbackRequest
from bot.ops.rollback.states import KIND, RUNNING_STATES, RollbackData, rollback_data
from bot.ops.rollback.target import check_words
from bot.ops.workflow import Workflow

__all__ = [
    "KIND",
    "RUNNING_STATES",
    "WORKFLOW",
    "RepeatNeedsConfirmation",
    "RollbackData",
    "RollbackRequest",
    "authorize_request",
    "check_recovery_offer",
    "check_repeat_still_current",
    "check_words",
    "create_rollback",
    "decide",
    "execute",
    "fail_unexpectedly",
    "on_decided",
    "on_expired",
    "rollback_data",
    "yield_to",
]

WORKFLOW = Workflow(
    kind=KIND,
    running_states=RUNNING_STATES,
    execute=execute,
    fail_unexpectedly=fail_unexpectedly,
    on_decided=on_decided,
    on_expired=on_expired,
)
