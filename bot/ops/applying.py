"""A Cloud Run change, applied durably (releases and flag flips): one PATCH, its operation's name
committed before it is awaited (state ``applying``, with what to expect and where to go next),
so that a restarted bot follows the operation instead of sending the change twice.

A wait longer than ``release.operation_timeout_s`` is no failure: Cloud Run is still applying
the change (bot/ops/slow.py), and the next run follows the same operation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.slow import not_applied, still_applying
from bot.ops.stepping import Record, ensure_current
from bot.ports import CloudRunError, EtagConflict, ServiceState, TrafficTarget
from bot.store import Operation

# Send the change on the service as read now: the Cloud Run operation's name, the targets sent.
Send = Callable[[], tuple[str, list[TrafficTarget]]]
# A change that could not be sent or failed: (deps, operation, purpose, error) -> what follows.
Failed = Callable[[Deps, Operation, str, CloudRunError], Operation]
# A change Cloud Run applied: (deps, operation, the service as it left it) -> what follows.
After = Callable[[Deps, Operation, ServiceState], Operation]


@dataclass(frozen=True)
class Changes:
    """How a workflow applies its Cloud Run changes: its ``record``, its audit actions
    (``{audited_as}{purpose}``) and what follows a change that failed. ``retry_stale``: a
    stale etag (someone changed the service in between) is sent once more on a fresh read,
    unless the operation was written since (an on-call rollback). ``remember_expected``: the
    traffic as applied is kept as ``expected`` (what moved out of band is measured against it)."""

    record: Record
    audited_as: str
    failed: Failed
    retry_stale: bool = False
    remember_expected: bool = False

    def apply(
        self, deps: Deps, operation: Operation, send: Send, then: str, purpose: str
    ) -> Operation:
        """Send one change and commit its operation's name before waiting for it (state
        ``applying``); ``then`` names what follows once Cloud Run applied it."""
        try:
            name, sent = send()
        except EtagConflict as error:
            if not self.retry_stale:
                return self.failed(deps, operation, purpose, error)
            ensure_current(deps, operation)  # not over an on-call rollback made meanwhile
            try:
                name, sent = send()
            except CloudRunError as again:
                return self.failed(deps, operation, purpose, again)
        except CloudRunError as error:
            return self.failed(deps, operation, purpose, error)
        expected = {t.revision: t.percent for t in sent if t.percent}
        deps.audit(
            BOT_ACTOR,
            f"{self.audited_as}{purpose}",
            "ok",
            service=operation.service,
            revision=operation.to_revision,
            operation_id=operation.id,
            cloud_operation=name,
            traffic=expected,
        )
        pending = {"op": name, "then": then, "purpose": purpose, "expect": expected}
        return self.record.commit(deps, operation, "applying", due_at=None, pending=pending)

    def follow(
        self,
        deps: Deps,
        operation: Operation,
        after: Mapping[str, After],
        failed: Failed | None = None,
    ) -> Operation:
        """The step of state ``applying``: follow the change until Cloud Run applied it, then
        go on by the name the change gave (``after``); a change that failed, or left other
        traffic than it asked for (a deploy's new revision failed), goes to ``failed`` (the
        workflow's, by default)."""
        failed = failed or self.failed
        pending = operation.data["pending"]
        timeout = deps.config.release.operation_timeout_s
        try:
            state = deps.cloudrun.wait_operation(pending["op"], timeout)
        except CloudRunError as error:
            if error.reason == "operation_timeout":
                return still_applying(deps, operation, self.record.kind, error)
            return failed(deps, operation, pending["purpose"], error)
        if state.failure or state.serving() != pending["expect"]:
            return failed(deps, operation, pending["purpose"], not_applied(state))
        applied: dict[str, Any] = {"pending": None}
        if self.remember_expected:
            applied["expected"] = state.serving()
        operation = self.record.commit(deps, operation, **applied)
        return after[pending["then"]](deps, operation, state)
