"""Feature flags on Cloud Run (`/flag`), as a durable state machine.

A flip is one PATCH that changes only the flag's ``FEATURE_FLAG_*`` variable on the ingress
container of the revision serving now (same image, same everything else), creating a named
revision at 0% with tag ``flag``. Its health and its own ``GET /config/flags`` are verified on
the tag URL, then it gets 100%, then it is watched with the runbook's decision table for
``thresholds.observe_minutes``. "Roll back now" moves 100% back to the previous revision at once
(faster than a second env change); otherwise the flag stays. See bot/policy/flags.py.
"""

from bot.ops.flags.listing import list_flags
from bot.ops.flags.machine import execute, fail_unexpectedly
from bot.ops.flags.people import roll_back, stand_aside
from bot.ops.flags.request import FlagRequest, request_flip
from bot.ops.flags.states import FINAL_STATES, FLAG_TAG, RUNNING_STATES, TRAFFIC_STATES
from bot.ops.workflow import Workflow

__all__ = [
    "FINAL_STATES",
    "FLAG_TAG",
    "RUNNING_STATES",
    "TRAFFIC_STATES",
    "WORKFLOW",
    "FlagRequest",
    "execute",
    "fail_unexpectedly",
    "list_flags",
    "request_flip",
    "roll_back",
    "stand_aside",
]


# A flip asks nobody's approval (the matrix row is auto or self): nothing is decided or expires.
WORKFLOW = Workflow(
    kind="flag",
    running_states=RUNNING_STATES,
    execute=execute,
    fail_unexpectedly=fail_unexpectedly,
)
