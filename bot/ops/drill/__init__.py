"""The monthly rollback drill ("Test Rollback Mensual"), as a durable state machine.

deploying -> deploy_applying -> verifying -> rolling_back -> waiting_rollback ->
checking_metrics -> succeeded (the drill passed) or failed.

A drill deploys a test revision of the staging service's current image (named
``SERVICE-drill-…``, tagged ``drill``) at 100%, verifies its health, then rolls back to the
revision that served before with the production rollback workflow (bot.ops.rollback: the drill
hands the service's lock to that rollback), verifies ``/metrics``, and records the result with
the measured time to safe traffic. A test revision that fails its health checks is still rolled
back: the drill then fails, and the time to safe traffic is measured all the same.
"""

from bot.ops.drill.history import drills_message, log_text
from bot.ops.drill.machine import execute, fail_unexpectedly
from bot.ops.drill.people import stand_aside, take_back
from bot.ops.drill.request import request_drill
from bot.ops.drill.schedule import next_scheduled, tick
from bot.ops.drill.states import RUNNING_STATES
from bot.ops.workflow import Workflow

__all__ = [
    "RUNNING_STATES",
    "WORKFLOW",
    "drills_message",
    "execute",
    "fail_unexpectedly",
    "log_text",
    "next_scheduled",
    "request_drill",
    "stand_aside",
    "take_back",
    "tick",
]

# A drill never waits for an approval: nothing is decided or expires.
WORKFLOW = Workflow(
    kind="drill",
    running_states=RUNNING_STATES,
    execute=execute,
    fail_unexpectedly=fail_unexpectedly,
)
