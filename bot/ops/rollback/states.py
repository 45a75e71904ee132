"""A rollback operation's states, and the step each running state takes."""

from __future__ import annotations

RUNNING_STATES = ("approved", "shifting", "verifying")
# A rollback that ran: it moved traffic, or tried to. A request refused (busy, superseded,
# rejected, expired) never ran, so it never hides the one that did from the repeat question.
RAN_STATES = ("succeeded", "failed")


STEP_OF_STATE = {"approved": "shift", "shifting": "wait", "verifying": "verify"}
