"""What the engine calls on a durable workflow: the one contract the six kinds of operation
(rollback, release, flag flip, backup, restore, drill) meet.

Each workflow package exposes one ``WORKFLOW`` (a ``Workflow``) naming its own functions, and
the engine (bot/ops/engine.py) knows a workflow only through it.

Every workflow package keeps the same files for the same things, beside the modules of its own
domain (a release's canary steps, a rollback's choice of target, a restore's secret):

- ``__init__.py``: what the rest of the bot uses, and ``WORKFLOW``;
- ``states.py``: its states (``RUNNING_STATES``, the ones the engine runs; ``FINAL_STATES``),
  and its typed data: a pydantic model on bot/ops/operation_data.py's ``OperationData``, stored
  as JSON with a ``version`` (``RollbackData``, ``ReleaseData``, ``FlagData``, ``BackupData``,
  ``RestoreData``, ``DrillData``), which every write of its ``record.py`` validates;
- ``request.py``: a request read, authorized and recorded (nothing changes in the cloud yet);
- ``machine.py``: its state machine: one step per running state, and ``execute``;
- ``record.py``: committing its progress (its next state and data together) and its end;
- ``people.py``: what people do to it (approvals, an on-call engineer's emergency rollback);
- ``view.py``: its one live card.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.ops.approvals import OnDecided, OnExpired
from bot.ops.context import Deps
from bot.store import Operation

Execute = Callable[[Deps, str], Operation]  # (deps, operation_id) -> the operation as left
FailUnexpectedly = Callable[[Deps, str], None]  # (deps, operation_id)


def nothing_to_decide(deps: Deps, operation: Operation, approve: bool, user: str) -> None:
    """A workflow that asks nobody's approval: nothing is ever decided."""


def nothing_expires(deps: Deps, operation: Operation) -> None:
    """A workflow that asks nobody's approval: nothing ever expires."""


@dataclass(frozen=True)
class Workflow:
    """A kind of durable operation, as the engine runs it.

    ``execute`` runs the operation from the state it is in until it ends, waits for a person
    or waits for its next due time (``due_at``); the engine calls it under the operation's
    lease, at once and at every tick while the state is one of ``running_states``.
    ``fail_unexpectedly`` ends loudly (or gets to safety first) an operation whose ``execute``
    raised. ``on_decided``: recovery of an approval decided by an older bot without the
    operation's next state. ``on_expired``: nobody decided in time."""

    kind: str  # Operation.kind
    running_states: tuple[str, ...]
    execute: Execute
    fail_unexpectedly: FailUnexpectedly
    on_decided: OnDecided = nothing_to_decide
    on_expired: OnExpired = nothing_expires
