"""Restoring a Cloud SQL backup to a new instance and moving the service onto it, as a durable
workflow (see machine.py). Going back is a traffic move to the revision that used the old
database; an on-call engineer's /rollback always gets through (people.take_back)."""

from bot.ops.restore.machine import execute
from bot.ops.restore.people import (
    decided,
    fail_unexpectedly,
    go_back_now,
    on_decided,
    on_expired,
    take_back,
)
from bot.ops.restore.request import RestoreRequest, preview_restore, request_restore
from bot.ops.restore.states import FINAL_STATES, RUNNING_STATES
from bot.ops.restore.view import refresh, restore_view
from bot.ops.workflow import Workflow

__all__ = [
    "FINAL_STATES",
    "RUNNING_STATES",
    "WORKFLOW",
    "RestoreRequest",
    "decided",
    "execute",
    "fail_unexpectedly",
    "go_back_now",
    "on_decided",
    "on_expired",
    "preview_restore",
    "refresh",
    "request_restore",
    "restore_view",
    "take_back",
]

WORKFLOW = Workflow(
    kind="restore",
    running_states=RUNNING_STATES,
    execute=execute,
    fail_unexpectedly=fail_unexpectedly,
    on_decided=on_decided,
    on_expired=on_expired,
)
