"""Runs durable operations: in a thread pool, under a lease in the database, resumed at start.

The lease lets several bot instances share one PostgreSQL without running an operation twice;
a crashed instance's lease runs out and another one (or the restarted one) picks the work up.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

from bot.database import UNAVAILABLE
from bot.ops import approvals, backups, cards, drill, flags, incidents, release, restore, rollback
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.workflow import Workflow
from bot.store import TERMINAL_STATES, Operation

log = logging.getLogger("runback.engine")

# operation kind -> its workflow (bot/ops/workflow.py: all the engine knows of it)
WORKFLOWS: dict[str, Workflow] = {
    workflow.kind: workflow
    for workflow in (
        rollback.WORKFLOW,
        release.WORKFLOW,
        flags.WORKFLOW,
        backups.WORKFLOW,
        restore.WORKFLOW,
        drill.WORKFLOW,
    )
}
ON_EXPIRED = {kind: workflow.on_expired for kind, workflow in WORKFLOWS.items()}
ON_DECIDED = {kind: workflow.on_decided for kind, workflow in WORKFLOWS.items()}


class Engine:
    def __init__(self, deps: Deps, lease_s: float = 15.0, workers: int = 4) -> None:
        self.deps = deps
        self.lease_s = lease_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="runback-op")
        # Few threads on purpose: work after an ack must not starve the acks of the GIL.
        self._work = ThreadPoolExecutor(2, thread_name_prefix="runback-work")
        # Emergencies (rollbacks, incident judgements) get a lane of their own: they must never
        # queue behind read-only commands, however many of those anyone sends.
        self._urgent = ThreadPoolExecutor(2, thread_name_prefix="runback-urgent")
        # Answers to the person who asked (Slack's response_url) go out on a lane of their
        # own: an answer that is slow, refused or retried by slack_sdk must never hold back
        # (or reorder) the work of the commands queued behind it.
        self._answers = ThreadPoolExecutor(2, thread_name_prefix="runback-answer")
        # What must reach Slack within its trigger_id's 3 s (opening a modal): never behind an
        # answer that Slack is slow to take.
        self._prompt = ThreadPoolExecutor(2, thread_name_prefix="runback-prompt")
        self._lock = threading.Condition()
        self._running: set[str] = set()
        self._active = 0
        # when a handler, its work, a delivery or an operation last began or ended
        self._last_activity = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.courier = cards.Courier(deps, self.hold)
        deps.courier = self.courier
        deps.submit = self.submit  # a workflow hands the engine one it started

    # -- running operations ------------------------------------------------------------------

    def submit(self, operation_id: str) -> None:
        with self._lock:
            if operation_id in self._running or self._stop.is_set():
                return
            self._running.add(operation_id)
        self._pool.submit(self._run, operation_id)

    def background(self, work: Callable[[], None], urgent: bool = False) -> None:
        """Run a handler's work after its ack, off the request's thread, so that acks never
        queue behind slow work (Slack wants its answer within 3 s). ``urgent`` work (on-call
        rollbacks, incident judgements) runs in its own lane, ahead of everything else."""
        self._in_lane(self._urgent if urgent else self._work, work)

    def answer(self, send: Callable[[], None]) -> None:
        """Send a handler's answer to its requester, on the answers' own lane."""
        self._in_lane(self._answers, send)

    def promptly(self, work: Callable[[], None]) -> None:
        """Run a handler's Slack call that has seconds to live (views.open), on a lane of its
        own."""
        self._in_lane(self._prompt, work)

    def _in_lane(self, lane: ThreadPoolExecutor, work: Callable[[], None]) -> None:
        with self._lock:
            self._active += 1

        def run() -> None:
            try:
                work()
            except Exception:
                log.exception("background work failed")
            finally:
                with self._lock:
                    self._active -= 1
                    self._lock.notify_all()

        lane.submit(run)

    def _run(self, operation_id: str) -> None:
        try:
            if self._take(operation_id):
                before = self.deps.store.operations.operation(operation_id)
                workflow = WORKFLOWS[before.kind if before else "rollback"]
                was_running = before is not None and before.state not in TERMINAL_STATES
                try:
                    operation = workflow.execute(self.deps, operation_id)
                except UNAVAILABLE:
                    # Not the workflow's failure: the database stopped answering (past its
                    # bounded wait) and nothing more of this step was committed. A later tick
                    # takes it up again from the store, as after a restart.
                    log.exception("the database refused operation %s; it resumes", operation_id)
                    operation = None
                except Exception:
                    log.exception("operation %s crashed", operation_id)
                    operation = self._after_crash(workflow, operation_id)
                finally:
                    with suppress(*UNAVAILABLE):  # else its lease simply runs out
                        self.deps.store.operations.release_lease(operation_id, self.owner)
                if was_running and operation is not None and operation.state in TERMINAL_STATES:
                    incidents.on_operation_finished(self.deps, operation)
                    waiting = rollback.rollback_data(operation).drill
                    if waiting:  # the drill that started this rollback waits for it: goes on
                        self.submit(waiting)
        finally:
            with self._lock:
                self._running.discard(operation_id)
                self._last_activity = time.monotonic()
                self._lock.notify_all()

    def _after_crash(self, workflow: Workflow, operation_id: str) -> Operation | None:
        """End a crashed operation loudly; when that means getting to safety (a release goes
        back to blue), start it now rather than at the next tick."""
        workflow.fail_unexpectedly(self.deps, operation_id)
        operation = self.deps.store.operations.operation(operation_id)
        if operation is None or operation.state not in workflow.running_states:
            return operation
        try:
            return workflow.execute(self.deps, operation_id)
        except Exception:
            log.exception("operation %s crashed again while getting to safety", operation_id)
            workflow.fail_unexpectedly(self.deps, operation_id)
            return self.deps.store.operations.operation(operation_id)

    def _take(self, operation_id: str) -> bool:
        """Claim an operation to run it. Taking over from an instance that died holding it
        (its lease ran out, never given back) goes into the operation's timeline."""
        seen = self.deps.store.operations.operation(operation_id)
        previous = seen.lease_owner if seen is not None else ""
        if not self._claim(operation_id, seen_owner=previous or ""):
            return False
        if previous and previous != self.owner:
            log.warning("took over operation %s from %s (lease ran out)", operation_id, previous)
            self.deps.store.journal.add_event(
                operation_id,
                self.deps.clock.now(),
                "taken_over",
                actor=BOT_ACTOR,
                previous=previous,
                instance=self.owner,
            )
        return True

    def _claim(self, operation_id: str, seen_owner: str | None = None) -> bool:
        now = self.deps.clock.now()
        until = now + timedelta(seconds=self.lease_s)
        return self.deps.store.operations.claim_lease(
            operation_id, self.owner, now, until, seen_owner
        )

    def tick(self) -> None:
        """The recovery pass, at start and on every tick: expire due approvals, finish decisions
        a crash left half-applied, free locks of ended operations, and resume operations nobody
        is running (crash, restart)."""
        with self.track():
            for operation_id in approvals.expire_due(self.deps, ON_EXPIRED):
                self._tell_incidents(operation_id)  # an incident's rollback request expired
            # one read of what is unfinished serves the whole pass: a database round trip per
            # question, on every instance, every second, is load nobody needs
            unfinished = self.deps.store.operations.unfinished_operations()
            for operation_id in approvals.recover_decided(
                self.deps, ON_DECIDED, ON_EXPIRED, unfinished
            ):
                self.submit(operation_id)  # decided now: it runs (an ended one returns at once)
            for service in self.deps.store.operations.release_stale_locks():
                log.warning("freed the lock of %s, held by an operation that had ended", service)
            for operation in unfinished:
                if operation.state in WORKFLOWS[operation.kind].running_states:
                    self.submit(operation.id)
            for operation_id in incidents.tick(self.deps):
                self.submit(operation_id)
            for operation_id in drill.tick(self.deps, unfinished):
                self.submit(operation_id)
            if self.courier.running:  # Slack retries due now (or all of them, without a courier)
                self.courier.kick()
            else:
                cards.deliver_due(self.deps)

    def tick_in_request(self, deadline_s: float) -> bool:
        """``POST /tasks/tick``: the recovery pass, then wait (at most ``deadline_s``) until the
        work it started, and whatever else runs, is done: cards delivered included. With
        request-based billing Cloud Run takes the CPU away once a response is sent ("you
        shouldn't start background threads": Cloud Run docs, general development tips), so due
        steps must run while the tick's request is still open. True when all was done in time;
        otherwise the rest goes on at the next tick."""
        self.tick()
        return self.wait_idle(timeout_s=deadline_s)

    def next_due(self, after: datetime) -> datetime | None:
        """When the next timed step falls due after ``after``, whatever it is: an operation's
        next step (a judgement, a Cloud SQL poll), an approval's expiry, an incident's next
        check, the drill schedule. None when nothing waits for time. The sandbox's `wait` runs
        each at its own time, in order, as time passing would."""
        deps = self.deps
        dues = [deps.store.approvals.next_approval_expiry(), drill.next_scheduled(deps)]
        for operation in deps.store.operations.unfinished_operations():
            due = (operation.data or {}).get("due_at")
            if due and operation.state in WORKFLOWS[operation.kind].running_states:
                dues.append(datetime.fromisoformat(due))
        dues.extend(
            incidents.next_check(deps, record) for record in deps.store.incidents.open_incidents()
        )
        return min((due for due in dues if due is not None and due > after), default=None)

    def _tell_incidents(self, operation_id: str) -> None:
        operation = self.deps.store.operations.operation(operation_id)
        if operation is not None and operation.state in TERMINAL_STATES:
            incidents.on_operation_finished(self.deps, operation)

    def judge_incident(self, incident_id: str) -> None:
        """Judge a new incident off the request thread; start the rollback it calls for."""

        def work() -> None:
            operation_id = incidents.judge_incident(self.deps, incident_id)
            if operation_id:
                self.submit(operation_id)

        self.background(work, urgent=True)

    # -- background threads ------------------------------------------------------------------

    def start(self, tick_interval_s: float = 1.0) -> None:
        self.courier.start()
        self._spawn("runback-ticker", self._every, tick_interval_s, self.tick)
        self._spawn("runback-lease", self._every, self.lease_s / 3, self._renew_leases)

    def _spawn(self, name: str, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _every(self, interval: float, work: object) -> None:
        while not self._stop.wait(interval):
            try:
                work()  # type: ignore[operator]
            except Exception:
                log.exception("background work failed")

    def _renew_leases(self) -> None:
        with self._lock:
            running = list(self._running)
        for operation_id in running:
            self._claim(operation_id)

    def shutdown(self, wait: bool = True) -> None:
        self._stop.set()
        self.courier.stop()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._work.shutdown(wait=wait, cancel_futures=not wait)
        self._urgent.shutdown(wait=wait, cancel_futures=not wait)
        self._answers.shutdown(wait=wait, cancel_futures=not wait)
        self._prompt.shutdown(wait=wait, cancel_futures=not wait)

    # -- activity, so the console and tests can wait for quiet --------------------------------

    def tracked(self, handler: Callable[..., None]) -> Callable[..., None]:
        """Wrap a Slack handler so that the console and tests see it as activity from before
        its ack until its work is handed over (Bolt answers Slack once the handler returns)."""

        @functools.wraps(handler)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            with self.track():
                handler(*args, **kwargs)

        return wrapper

    def hold(self) -> Callable[[], None]:
        """Count as activity until the returned release is called (the Slack courier's
        deliveries, so that wait_idle also waits for the channel to be told)."""
        with self._lock:
            self._active += 1
            self._last_activity = time.monotonic()

        def release() -> None:
            with self._lock:
                self._active -= 1
                self._last_activity = time.monotonic()
                self._lock.notify_all()

        return release

    @contextmanager
    def track(self) -> Iterator[None]:
        with self._lock:
            self._active += 1
            self._last_activity = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                self._last_activity = time.monotonic()
                self._lock.notify_all()

    @property
    def busy(self) -> bool:
        """A Slack handler, its work or an operation is running now."""
        with self._lock:
            return bool(self._active or self._running)

    def quiet_for(self, settle_s: float) -> bool:
        """Nothing is running, and nothing began or ended in the last ``settle_s``: a burst of
        short commands is busy between its handlers too."""
        with self._lock:
            return self._quiet(settle_s)

    def _quiet(self, settle_s: float) -> bool:
        idle = not (self._active or self._running)
        return idle and time.monotonic() - self._last_activity >= settle_s

    def wait_idle(self, timeout_s: float = 30.0, settle_s: float = 0.05) -> bool:
        """Wait until no handler or operation has been busy for ``settle_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                while self._active or self._running:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._lock.wait(remaining)
            time.sleep(settle_s)
            with self._lock:
                if not self._active and not self._running:
                    return True
        return False

    def wait_quiet(self, quiet_s: float, timeout_s: float) -> bool:
        """Wait until ``quiet_for(quiet_s)``: for work that must not fall between two acks of a
        burst (the warm-up), where ``wait_idle``'s one look at an idle moment is not enough."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._quiet(quiet_s):
                    return True
                since = time.monotonic() - self._last_activity
            time.sleep(max(quiet_s - since, 0.005))
        return False
