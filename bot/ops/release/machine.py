"""The state machine: which step runs in which state, and the loop that advances it."""

from __future__ import annotations

import logging

from bot.ops.context import Deps
from bot.ops.release.backup import step_backup
from bot.ops.release.canary import after_shift, step_shift
from bot.ops.release.cloud import CHANGES
from bot.ops.release.deploy import after_deploy, after_untag, step_deploy, step_smoke
from bot.ops.release.finish import after_finalize, after_roll_back, step_finalize, step_roll_back
from bot.ops.release.judging import step_judge
from bot.ops.release.states import MAX_STEPS_PER_RUN
from bot.ops.stepping import advance
from bot.store import Operation

log = logging.getLogger("runback.release")


def execute(deps: Deps, operation_id: str) -> Operation:
    """Advance the release until it ends, waits for a person, or waits for its next due time."""
    return advance(
        deps,
        operation_id,
        STEPS,
        name="release",
        max_steps=MAX_STEPS_PER_RUN,
    )


def _step_applying(deps: Deps, operation: Operation) -> Operation:
    return CHANGES.follow(deps, operation, AFTER_APPLY)


STEPS = {
    "backing_up": step_backup,
    "deploying": step_deploy,
    "applying": _step_applying,
    "smoke": step_smoke,
    "shifting": step_shift,
    "judging": step_judge,
    "finalizing": step_finalize,
    "rolling_back": step_roll_back,
}


AFTER_APPLY = {
    "deployed": after_deploy,
    "untagged": after_untag,
    "shifted": after_shift,
    "finalized": after_finalize,
    "rolled_back": after_roll_back,
}
