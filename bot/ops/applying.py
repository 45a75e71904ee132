"""A Cloud Run change, applied durably: one PATCH, its operation's name committed before it is
awaited, so that a restarted bot follows the operation instead of sending the change twice.

``follow_change`` is how every workflow follows a change it sent (rollback, release, flag
flip, restore, drill): applied (as Cloud Run left the service), still applying (a wait past
the timeout is no failure: bot/ops/slow.py; the next run follows the same operation), or not
applied (the operation failed, or the service serves other traffic than the change asked for).
``Changes`` is the whole shape for releases and flag flips (state ``applying``, with what to
expect and where to go next).
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
class Followed:
    """What came of a Cloud Run change followed for at most a timeout: exactly one of applied
    (``failed`` and ``slow`` None), still applying (``slow``) and not applied (``failed``).
    ``state``: the service as the change left it (None when the operation itself failed)."""

    state: ServiceState | None = None
    slow: CloudRunError | None = None  # Cloud Run is still applying it: follow it again
    failed: CloudRunError | None = None  # slow.not_applied's reason, or the operation's error

    @property
    def applied(self) -> ServiceState | None:
        return self.state if self.slow is None and self.failed is None else None


def follow_change(
    deps: Deps, name: str, expect: Mapping[str, int] | None, timeout_s: float
) -> Followed:
    """Follow Cloud Run operation ``name`` for at most ``timeout_s``; ``expect``: the traffic the
    change asked for (None: any traffic; a deploy at 0% is judged by its caller)."""
    try:
        state = deps.cloudrun.wait_operation(name, timeout_s)
    except CloudRunError as error:
        if error.reason == "operation_timeout":
            return Followed(slow=error)
        return Followed(failed=error)
    return left_as(state, expect)


def left_as(state: ServiceState, expect: Mapping[str, int] | None) -> Followed:
    """A change whose operation is done, judged by the service it left: applied, unless Cloud
    Run says it failed or the service serves other traffic than ``expect``."""
    if state.failure or (expect is not None and state.serving() != dict(expect)):
        return Followed(state, failed=not_applied(state))
    return Followed(state)


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
        followed = follow_change(deps, pending["op"], pending["expect"], timeout)
        if followed.slow is not None:
            return still_applying(deps, operation, self.record.kind, followed.slow)
        state = followed.applied
        if state is None:
            assert followed.failed is not None
            return failed(deps, operation, pending["purpose"], followed.failed)
        applied: dict[str, Any] = {"pending": None}
        if self.remember_expected:
            applied["expected"] = state.serving()
        operation = self.record.commit(deps, operation, **applied)
        return after[pending["then"]](deps, operation, state)
