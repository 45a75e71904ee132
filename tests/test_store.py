"""The store on SQLite and PostgreSQL: same code, same behaviour, races settled by the database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from bot.store import (
    AuditRecord,
    Decided,
    LockHolder,
    Move,
    NewerOperation,
    Newest,
    Operation,
    ServiceHeld,
    Store,
    data_seq,
)
from tests.db import BACKENDS, open_store

T = TypeVar("T")

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
THREADS = 10


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with open_store(request.param, tmp_path) as opened:
        yield opened


def new_operation(store: Store, now: datetime = T0, **fields: object) -> str:
    values: dict[str, object] = {
        "kind": "rollback",
        "service": "wa-backend",
        "state": "pending",
        "requested_by": "U0ANA",
        "channel": "C0INCIDENTS",
    }
    values.update(fields)
    return store.operations.create_operation(now, **values).id


def all_at_once(count: int, call: Callable[[int], T]) -> list[T]:
    """Run ``call(i)`` on ``count`` threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        barrier.wait(timeout=10)
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def assert_utc(value: datetime | None, expected: datetime) -> None:
    assert value is not None
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert value == expected


# -- operations ----------------------------------------------------------------------------------


def test_operation_create_round_trips_fields_and_utc_timestamps(store: Store) -> None:
    local = T0.astimezone(CEST)  # same instant, written with a +02:00 offset
    op_id = new_operation(store, local, reason="p95 > 2 s", emergency=True, from_revision="r2")

    op = store.operations.operation(op_id)
    assert op is not None
    assert (op.kind, op.service, op.state, op.requested_by, op.channel) == (
        "rollback",
        "wa-backend",
        "pending",
        "U0ANA",
        "C0INCIDENTS",
    )
    assert (op.reason, op.emergency, op.from_revision, op.to_revision) == (
        "p95 > 2 s",
        True,
        "r2",
        "",
    )
    assert op.data == {}
    assert_utc(op.created_at, T0)
    assert_utc(op.updated_at, T0)
    assert op.finished_at is None
    assert op.lease_until is None


def test_operation_unknown_id_is_none(store: Store) -> None:
    assert store.operations.operation("nope") is None
    with pytest.raises(KeyError):
        store.operations.update_operation("nope", T0, state="running")
    with pytest.raises(KeyError):
        store.operations.merge_data("nope", T0, a=1)


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises((ValueError, StatementError), match="naive datetime"):
        new_operation(store, datetime(2024, 5, 1, 12, 0))


def test_update_bumps_updated_at_and_finish_sets_finished_at(store: Store) -> None:
    op_id = new_operation(store)
    t1, t2 = T0 + timedelta(seconds=5), T0 + timedelta(seconds=42, microseconds=7)

    store.operations.update_operation(op_id, t1, state="running", to_revision="r1")
    op = store.operations.operation(op_id)
    assert op is not None
    assert (op.state, op.to_revision) == ("running", "r1")
    assert_utc(op.created_at, T0)
    assert_utc(op.updated_at, t1)
    assert op.finished_at is None
    assert [o.id for o in store.operations.unfinished_operations()] == [op_id]

    store.operations.update_operation(op_id, t2.astimezone(CEST), state="succeeded")
    op = store.operations.operation(op_id)
    assert op is not None
    assert op.state == "succeeded"
    assert_utc(op.updated_at, t2)
    assert_utc(op.finished_at, t2)
    assert store.operations.unfinished_operations() == []


@pytest.mark.parametrize("state", ["succeeded", "failed", "rejected", "expired", "cancelled"])
def test_every_terminal_state_finishes(store: Store, state: str) -> None:
    op_id = new_operation(store)
    store.operations.update_operation(op_id, T0 + timedelta(seconds=1), state=state)
    op = store.operations.operation(op_id)
    assert op is not None
    assert_utc(op.finished_at, T0 + timedelta(seconds=1))


def test_unfinished_operations_oldest_first(store: Store) -> None:
    later = new_operation(store, T0 + timedelta(minutes=2), service="b")
    earlier = new_operation(store, T0, service="a")
    done = new_operation(store, T0 + timedelta(minutes=1), service="c")
    store.operations.update_operation(done, T0 + timedelta(minutes=3), state="failed")
    assert [o.id for o in store.operations.unfinished_operations()] == [earlier, later]


def test_merge_data_merges_and_keeps_existing_keys(store: Store) -> None:
    op_id = new_operation(store, data={"image": "gcr.io/x:1", "ages": {"r1": 3600}})
    t1 = T0 + timedelta(seconds=3)

    store.operations.merge_data(op_id, t1, timings={"shift_s": 1.5}, image="gcr.io/x:2")
    store.operations.merge_data(
        op_id, t1 + timedelta(seconds=1), error=None, checks=[200, 200, 200]
    )

    op = store.operations.operation(op_id)
    assert op is not None
    assert op.data == {
        "image": "gcr.io/x:2",
        "ages": {"r1": 3600},
        "timings": {"shift_s": 1.5},
        "error": None,
        "checks": [200, 200, 200],
    }
    assert_utc(op.updated_at, t1 + timedelta(seconds=1))
    assert op.finished_at is None


# -- steps ---------------------------------------------------------------------------------------


def test_steps_started_finished_and_retried_in_order(store: Store) -> None:
    op_id = new_operation(store)
    other = new_operation(store, service="other")
    t = [T0 + timedelta(seconds=i) for i in range(6)]

    store.operations.start_step(op_id, "shift", t[0])
    store.operations.finish_step(op_id, "shift", t[1], "failed", {"error": "503"})
    store.operations.start_step(
        op_id, "shift", t[2]
    )  # a retry: a new row; finishing updates the latest
    store.operations.finish_step(op_id, "shift", t[3], "done", {"operation": "ops/1"})
    store.operations.finish_step(
        op_id, "verify", t[4], "done", {"checks": 3}
    )  # finished without a start
    store.operations.start_step(other, "shift", t[5])

    steps = store.operations.steps(op_id)
    assert [(s.name, s.status, s.result) for s in steps] == [
        ("shift", "failed", {"error": "503"}),
        ("shift", "done", {"operation": "ops/1"}),
        ("verify", "done", {"checks": 3}),
    ]
    assert_utc(steps[0].started_at, t[0])
    assert_utc(steps[0].finished_at, t[1])
    assert_utc(steps[1].started_at, t[2])
    assert_utc(steps[1].finished_at, t[3])
    assert_utc(steps[2].started_at, t[4])
    assert [(s.name, s.status, s.finished_at) for s in store.operations.steps(other)] == [
        ("shift", "started", None)
    ]
    assert store.operations.steps("nope") == []


# -- service locks -------------------------------------------------------------------------------


def test_service_lock_is_exclusive_and_released(store: Store) -> None:
    first = new_operation(store, state="running", to_revision="r1")
    second = new_operation(store, requested_by="U0LUIS")

    assert store.operations.lock_holder("wa-backend") is None
    assert store.operations.acquire_lock("wa-backend", first, T0)
    assert not store.operations.acquire_lock("wa-backend", second, T0)
    assert not store.operations.acquire_lock("wa-backend", first, T0)  # not re-entrant either
    assert store.operations.acquire_lock("wa-backend-staging", second, T0)  # per service

    assert store.operations.lock_holder("wa-backend") == LockHolder(
        first, "rollback", "running", "U0ANA", "r1"
    )

    store.operations.release_lock("wa-backend", second)  # not the holder: nothing happens
    holder = store.operations.lock_holder("wa-backend")
    assert holder is not None and holder.operation_id == first

    store.operations.release_lock("wa-backend", first)
    assert store.operations.lock_holder("wa-backend") is None
    assert store.operations.acquire_lock("wa-backend", second, T0)
    holder = store.operations.lock_holder("wa-backend")
    assert holder is not None and holder.operation_id == second


def test_lock_holder_of_a_lock_without_operation_is_none(store: Store) -> None:
    # service_locks.operation_id has no foreign key: a lock whose operation is gone reads as free.
    assert store.operations.acquire_lock("wa-backend", "ghost", T0)
    assert store.operations.lock_holder("wa-backend") is None


def test_service_lock_race_has_one_winner(store: Store) -> None:
    ops = [new_operation(store) for _ in range(THREADS)]
    results = all_at_once(
        THREADS, lambda i: store.operations.acquire_lock("wa-backend", ops[i], T0)
    )
    assert results.count(True) == 1
    holder = store.operations.lock_holder("wa-backend")
    assert holder is not None and holder.operation_id == ops[results.index(True)]


# -- approvals -----------------------------------------------------------------------------------


def new_approval(store: Store, ttl: timedelta = timedelta(minutes=30), **fields: object) -> str:
    op_id = new_operation(store)
    values: dict[str, object] = {
        "operation_id": op_id,
        "action": "scheduled_rollback",
        "requested_by": "U0LUIS",
        "expires_at": T0 + ttl,
    }
    values.update(fields)
    return store.approvals.create_approval(T0, **values).id


def test_approval_created_pending(store: Store) -> None:
    approval_id = new_approval(store)
    approval = store.approvals.approval(approval_id)
    assert approval is not None
    assert (approval.status, approval.decided_by, approval.decided_at) == ("pending", "", None)
    assert_utc(approval.created_at, T0)
    assert_utc(approval.expires_at, T0 + timedelta(minutes=30))
    found = store.approvals.approval_for(approval.operation_id)
    assert found is not None and found.id == approval_id
    assert store.approvals.approval("nope") is None
    assert store.approvals.approval_for("nope") is None


def test_approval_for_returns_the_newest(store: Store) -> None:
    op_id = new_operation(store)
    base = {"operation_id": op_id, "action": "full_traffic", "requested_by": "U0LUIS"}
    old = store.approvals.create_approval(T0, expires_at=T0 + timedelta(minutes=30), **base).id
    new = store.approvals.create_approval(
        T0 + timedelta(minutes=1), expires_at=T0 + timedelta(minutes=31), **base
    ).id
    newest = store.approvals.approval_for(op_id)
    assert newest is not None and newest.id == new != old


def test_approval_decided_exactly_once(store: Store) -> None:
    approval_id = new_approval(store)
    t1 = T0 + timedelta(minutes=1)
    assert store.approvals.decide_approval(approval_id, "approved", "U0SOFIA", t1)
    assert not store.approvals.decide_approval(approval_id, "rejected", "U0LUIS", t1)
    assert not store.approvals.decide_approval("nope", "approved", "U0SOFIA", t1)

    approval = store.approvals.approval(approval_id)
    assert approval is not None
    assert (approval.status, approval.decided_by) == ("approved", "U0SOFIA")
    assert_utc(approval.decided_at, t1)


def test_approval_race_between_ten_clicks_has_one_winner(store: Store) -> None:
    approval_id = new_approval(store)
    deciders = [f"U0TL{i}" for i in range(THREADS)]
    now = T0 + timedelta(minutes=1)

    results = all_at_once(
        THREADS,
        lambda i: store.approvals.decide_approval(
            approval_id, "approved" if i % 2 else "rejected", deciders[i], now
        ),
    )

    assert results.count(True) == 1
    winner = results.index(True)
    approval = store.approvals.approval(approval_id)
    assert approval is not None
    assert approval.decided_by == deciders[winner]
    assert approval.status == ("approved" if winner % 2 else "rejected")


def test_expired_approval_is_not_decidable(store: Store) -> None:
    approval_id = new_approval(store, ttl=timedelta(minutes=30))
    deadline = T0 + timedelta(minutes=30)

    # at the deadline itself it is already too late
    assert not store.approvals.decide_approval(approval_id, "approved", "U0SOFIA", deadline)
    assert not store.approvals.decide_approval(
        approval_id, "approved", "U0SOFIA", deadline + timedelta(seconds=1)
    )
    approval = store.approvals.approval(approval_id)
    assert approval is not None and approval.status == "pending"

    just_before = new_approval(store, ttl=timedelta(minutes=30))
    assert store.approvals.decide_approval(
        just_before, "approved", "U0SOFIA", deadline - timedelta(microseconds=1)
    )


def test_expire_approvals_returns_each_once(store: Store) -> None:
    short = new_approval(store, ttl=timedelta(minutes=5))
    boundary = new_approval(store, ttl=timedelta(minutes=10))
    long = new_approval(store, ttl=timedelta(minutes=60))
    decided = new_approval(store, ttl=timedelta(minutes=5))
    assert store.approvals.decide_approval(
        decided, "rejected", "U0SOFIA", T0 + timedelta(minutes=1)
    )

    assert store.approvals.expire_approvals(T0) == []
    t10 = T0 + timedelta(minutes=10)
    assert sorted(a.id for a in store.approvals.expire_approvals(t10)) == sorted([short, boundary])
    assert store.approvals.expire_approvals(t10) == []
    assert store.approvals.expire_approvals(t10 + timedelta(minutes=1)) == []

    for approval_id in (short, boundary):
        approval = store.approvals.approval(approval_id)
        assert approval is not None and approval.status == "expired"
        assert_utc(approval.decided_at, t10)
        assert not store.approvals.decide_approval(approval_id, "approved", "U0SOFIA", T0)

    still = store.approvals.approval(long)
    assert still is not None and still.status == "pending"
    was = store.approvals.approval(decided)
    assert was is not None and was.status == "rejected"

    assert [a.id for a in store.approvals.expire_approvals(T0 + timedelta(hours=2))] == [long]


def test_expire_approvals_concurrently_returns_each_once(store: Store) -> None:
    ids = {new_approval(store, ttl=timedelta(minutes=1)) for _ in range(5)}
    now = T0 + timedelta(minutes=2)
    results = all_at_once(4, lambda _i: [a.id for a in store.approvals.expire_approvals(now)])
    returned = [approval_id for batch in results for approval_id in batch]
    assert sorted(returned) == sorted(ids)


# -- leases --------------------------------------------------------------------------------------


def test_lease_claim_renew_and_refuse_until_expiry(store: Store) -> None:
    op_id = new_operation(store)
    until = T0 + timedelta(seconds=30)

    assert store.operations.claim_lease(op_id, "runner-a", T0, until)
    op = store.operations.operation(op_id)
    assert op is not None and op.lease_owner == "runner-a"
    assert_utc(op.lease_until, until)

    later = T0 + timedelta(seconds=20)
    assert store.operations.claim_lease(
        op_id, "runner-a", later, later + timedelta(seconds=30)
    )  # renew
    until = later + timedelta(seconds=30)
    assert not store.operations.claim_lease(op_id, "runner-b", later, later + timedelta(seconds=30))
    assert not store.operations.claim_lease(op_id, "runner-b", until, until + timedelta(seconds=30))
    op = store.operations.operation(op_id)
    assert op is not None and op.lease_owner == "runner-a"
    assert_utc(op.lease_until, until)

    after = until + timedelta(microseconds=1)
    assert store.operations.claim_lease(op_id, "runner-b", after, after + timedelta(seconds=30))
    assert not store.operations.claim_lease(op_id, "runner-a", after, after + timedelta(seconds=30))
    op = store.operations.operation(op_id)
    assert op is not None and op.lease_owner == "runner-b"

    assert not store.operations.claim_lease("nope", "runner-a", T0, until)


def test_lease_release_only_by_owner(store: Store) -> None:
    op_id = new_operation(store)
    far = T0 + timedelta(hours=1)
    assert store.operations.claim_lease(op_id, "runner-a", T0, far)

    store.operations.release_lease(op_id, "runner-b")
    assert not store.operations.claim_lease(op_id, "runner-b", T0, far)

    store.operations.release_lease(op_id, "runner-a")
    op = store.operations.operation(op_id)
    assert op is not None and (op.lease_owner, op.lease_until) == ("", None)
    assert store.operations.claim_lease(op_id, "runner-b", T0, far)


def test_lease_race_has_one_winner(store: Store) -> None:
    op_id = new_operation(store)
    until = T0 + timedelta(seconds=30)
    results = all_at_once(
        THREADS, lambda i: store.operations.claim_lease(op_id, f"runner-{i}", T0, until)
    )
    assert results.count(True) == 1
    op = store.operations.operation(op_id)
    assert op is not None and op.lease_owner == f"runner-{results.index(True)}"


# -- timeline and audit --------------------------------------------------------------------------


def test_timeline_in_insertion_order_per_operation(store: Store) -> None:
    op_id, other = new_operation(store), new_operation(store)
    store.journal.add_event(op_id, T0, "requested", "U0ANA", reason="5xx")
    store.journal.add_event(other, T0, "requested", "U0PABLO")
    store.journal.add_event(
        op_id, T0, "lock_acquired"
    )  # same instant: order is still insertion order
    store.journal.add_event(
        op_id, T0 + timedelta(seconds=2), "traffic_shifted", to="r1", percent=100
    )
    store.journal.add_event(op_id, T0 + timedelta(seconds=3), "verified", checks=[200, 200, 200])

    events = store.journal.timeline(op_id)
    assert [(e.kind, e.actor, e.data) for e in events] == [
        ("requested", "U0ANA", {"reason": "5xx"}),
        ("lock_acquired", "", {}),
        ("traffic_shifted", "", {"to": "r1", "percent": 100}),
        ("verified", "", {"checks": [200, 200, 200]}),
    ]
    assert_utc(events[2].at, T0 + timedelta(seconds=2))
    assert [e.kind for e in store.journal.timeline(other)] == ["requested"]
    assert store.journal.timeline("nope") == []


def test_audit_in_insertion_order_with_limit(store: Store) -> None:
    for i, (actor, outcome) in enumerate(
        [("U0ANA", "ok"), ("U0EVE", "refused"), ("U0LUIS", "pending"), ("U0SOFIA", "ok")]
    ):
        store.journal.add_audit(
            AuditRecord(
                at=(T0 + timedelta(seconds=i)).astimezone(CEST),
                actor=actor,
                action="rollback",
                outcome=outcome,
                service="wa-backend",
                detail={"n": i},
            )
        )

    records = store.journal.audit()
    assert [(r.actor, r.outcome, r.detail) for r in records] == [
        ("U0ANA", "ok", {"n": 0}),
        ("U0EVE", "refused", {"n": 1}),
        ("U0LUIS", "pending", {"n": 2}),
        ("U0SOFIA", "ok", {"n": 3}),
    ]
    assert_utc(records[3].at, T0 + timedelta(seconds=3))
    assert (records[0].revision, records[0].operation_id) == ("", "")
    assert [r.actor for r in store.journal.audit(limit=2)] == ["U0ANA", "U0EVE"]


# -- serving history -----------------------------------------------------------------------------


def test_serving_history_newest_first_without_duplicates(store: Store) -> None:
    assert store.serving.served_revisions("wa-backend") == []
    assert store.serving.rolled_back_from("wa-backend") == set()

    for i, revision in enumerate(["r1", "r2", "r1", "r3", "r3", "r2"]):
        store.serving.record_serving("wa-backend", revision, "served", T0 + timedelta(minutes=i))
    store.serving.record_serving("wa-backend-staging", "s9", "served", T0)
    store.serving.record_serving("wa-backend", "r3", "rolled_back_from", T0, operation_id="op1")
    store.serving.record_serving("wa-backend", "r4", "rolled_back_from", T0)
    store.serving.record_serving("wa-backend", "r3", "rolled_back_from", T0)

    assert store.serving.served_revisions("wa-backend") == ["r2", "r3", "r1"]
    assert store.serving.served_revisions("wa-backend-staging") == ["s9"]
    assert store.serving.rolled_back_from("wa-backend") == {"r3", "r4"}
    assert store.serving.rolled_back_from("wa-backend-staging") == set()


# -- the Slack outbox ------------------------------------------------------------------------------


def test_outbox_card_keeps_its_backoff_and_newest_content(store: Store) -> None:
    store.outbox.stage_card("operation:1", "C0INCIDENTS", {"text": "v1", "blocks": []}, T0)
    [row] = store.outbox.due_outbox(T0)
    claimed = store.outbox.claim_outbox(row.id, T0, T0 + timedelta(seconds=60))
    assert claimed is not None
    assert store.outbox.claim_outbox(row.id, T0, T0 + timedelta(seconds=60)) is None, "one courier"
    assert store.outbox.due_outbox(T0) == [], "a claimed row is not offered twice"
    later = T0 + timedelta(seconds=30)
    store.outbox.settle_outbox(row.id, T0, attempts=1, error="ratelimited", due_at=later)

    store.outbox.stage_card("operation:1", "C0INCIDENTS", {"text": "v2", "blocks": []}, T0)

    assert store.outbox.due_outbox(T0) == [], "a new version does not jump a rate limit's wait"
    [due] = store.outbox.due_outbox(later)
    assert (due.version, due.shown, due.message["text"]) == (2, 0, "v2")
    store.outbox.settle_outbox(due.id, later, shown=due.version, attempts=0, ts="1.000100")
    assert store.outbox.due_outbox(later + timedelta(hours=1)) == []
    stale_list = due  # another instance listed it before it was delivered: it must not win
    assert store.outbox.claim_outbox(stale_list.id, later, later + timedelta(seconds=60)) is None


def test_a_card_staged_again_with_the_same_content_is_no_new_version(store: Store) -> None:
    """Slack is not sent a card it already shows (a restore's poll refreshes its card every
    few seconds): the same content is no new version, on both backends; a change is one."""
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Restoring* 40% · é"}}]
    card = {"text": "restoring", "blocks": blocks}
    store.outbox.stage_card("operation:3", "C0INCIDENTS", card, T0)
    [row] = store.outbox.due_outbox(T0)
    store.outbox.settle_outbox(row.id, T0, shown=row.version, attempts=0, ts="1.000100")

    store.outbox.stage_card("operation:3", "C0INCIDENTS", dict(card), T0 + timedelta(seconds=10))
    assert store.outbox.due_outbox(T0 + timedelta(seconds=10)) == [], "nothing new to show"
    again = store.outbox.outbox_row("operation:3")
    assert again is not None and (again.version, again.shown) == (1, 1)

    changed = {
        "text": "restoring",
        "blocks": [{**blocks[0], "text": {"type": "mrkdwn", "text": "50%"}}],
    }
    store.outbox.stage_card("operation:3", "C0INCIDENTS", changed, T0 + timedelta(seconds=20))
    [due] = store.outbox.due_outbox(T0 + timedelta(seconds=20))
    assert (due.version, due.shown, due.message) == (2, 1, changed)


def test_outbox_tells_the_requester_once(store: Store) -> None:
    store.outbox.stage_card("operation:2", "C0RANDOM", {"text": "v1", "blocks": []}, T0)
    assert store.outbox.claim_telling_requester("operation:2") == "", "no response_url yet"
    store.outbox.set_reply_url("operation:2", "https://hooks.slack.com/commands/T0/1/x")
    with ThreadPoolExecutor(THREADS) as pool:
        urls = list(
            pool.map(lambda _: store.outbox.claim_telling_requester("operation:2"), range(THREADS))
        )
    assert [u for u in urls if u] == ["https://hooks.slack.com/commands/T0/1/x"]


# -- a decision and its operation's next state, in one transaction --------------------------------


def awaiting(store: Store) -> tuple[str, str]:
    op_id = new_operation(store, state="awaiting_approval", data={"step": 1})
    assert store.operations.acquire_lock("wa-backend", op_id, T0)
    approval = store.approvals.create_approval(
        T0,
        operation_id=op_id,
        action="scheduled_rollback",
        requested_by="U0LUIS",
        expires_at=T0 + timedelta(minutes=30),
    )
    return op_id, approval.id


def test_decision_and_next_state_commit_together(store: Store) -> None:
    op_id, approval_id = awaiting(store)
    t1 = T0 + timedelta(minutes=1)
    move = Move(op_id, "awaiting_approval", "shifting", {"step": 2})
    assert store.decide_and_move(approval_id, Decided("approved", "U0SOFIA"), t1, move)
    operation, approval = store.operations.operation(op_id), store.approvals.approval(approval_id)
    assert operation is not None and approval is not None
    assert (operation.state, operation.data, approval.status) == (
        "shifting",
        {"step": 2},
        "approved",
    )
    assert not store.decide_and_move(approval_id, Decided("rejected", "U0LUIS"), t1, move)


def test_decision_is_rolled_back_when_the_operation_has_moved_on(store: Store) -> None:
    op_id, approval_id = awaiting(store)
    store.operations.update_operation(op_id, T0, state="cancelled")  # superseded meanwhile
    move = Move(op_id, "awaiting_approval", "approved")
    t1 = T0 + timedelta(minutes=1)
    assert not store.decide_and_move(approval_id, Decided("approved", "U0SOFIA"), t1, move)
    approval = store.approvals.approval(approval_id)
    assert approval is not None and approval.status == "pending", "nothing half-written"
    assert store.operations.operation(op_id).state == "cancelled"  # type: ignore[union-attr]


def test_reject_releases_the_lock_in_the_same_transaction(store: Store) -> None:
    op_id, approval_id = awaiting(store)
    move = Move(op_id, "awaiting_approval", "rejected", release_lock_of="wa-backend")
    t1 = T0 + timedelta(minutes=1)
    assert store.decide_and_move(approval_id, Decided("rejected", "U0SOFIA"), t1, move)
    assert store.operations.lock_holder("wa-backend") is None
    operation = store.operations.operation(op_id)
    assert operation is not None and operation.finished_at is not None


def test_move_operation_only_when_nobody_holds_a_live_lease(store: Store) -> None:
    op_id, _ = awaiting(store)
    now = T0 + timedelta(minutes=1)
    assert store.operations.claim_lease(op_id, "instance-a", now, now + timedelta(seconds=15))
    move = Move(op_id, "awaiting_approval", "cancelled", release_lock_of="wa-backend")
    assert not store.operations.move_operation(move, now)
    holder = store.operations.lock_holder("wa-backend")
    assert holder is not None and holder.lease_until == now + timedelta(seconds=15)
    assert store.operations.move_operation(move, now + timedelta(seconds=16))
    assert store.operations.lock_holder("wa-backend") is None


def test_advance_is_compare_and_set_on_the_data_and_returns_what_it_wrote(store: Store) -> None:
    """The state alone cannot see a same-state save, nor a state left and come back to: a
    person's move decided on an older read of either must lose."""
    op_id = new_operation(store, kind="flag", state="applying", data={"pending": "deploy"})
    read = store.operations.operation(op_id)
    assert read is not None and data_seq(read) == 0
    save = Move(op_id, "applying", "applying", {"pending": None}, from_seq=0)
    saved = store.operations.advance_operation(save, T0)
    assert saved is not None and saved.data == {"pending": None, "seq": 1}
    stale = Move(op_id, "applying", "untagging", {"pending": None, "by": "U0ANA"}, from_seq=0)
    assert store.operations.advance_operation(stale, T0) is None, (
        "a same-state save came in between"
    )
    away = store.operations.advance_operation(
        Move(op_id, "applying", "shifting", {}, from_seq=1), T0
    )
    come_back = Move(op_id, "shifting", "applying", {"pending": "shift"}, from_seq=2)
    back = store.operations.advance_operation(come_back, T0)
    assert away is not None and back is not None and data_seq(back) == 3
    decided_before = Move(op_id, "applying", "untagging", {}, from_seq=1)
    assert store.operations.advance_operation(decided_before, T0) is None, (
        "applying, but not that one"
    )
    current = store.operations.operation(op_id)
    assert current is not None and current.state == "applying"
    assert current.data == {"pending": "shift", "seq": 3}


def test_a_steps_columns_are_written_with_its_move_or_not_at_all(store: Store) -> None:
    """The Cloud Run operation a rollback sent (a restore's revisions) is stored in the same
    compare-and-set as the state it moves to: a move that lost writes neither."""
    op_id = new_operation(store, state="approved", data={})
    sent = Move(op_id, "approved", "shifting", {}, from_seq=0, columns={"cloud_operation": "op-1"})
    moved = store.operations.advance_operation(sent, T0)
    assert moved is not None and (moved.state, moved.cloud_operation) == ("shifting", "op-1")
    late = Move(op_id, "approved", "shifting", {}, from_seq=0, columns={"cloud_operation": "op-2"})
    assert store.operations.advance_operation(late, T0) is None
    current = store.operations.operation(op_id)
    assert current is not None and current.cloud_operation == "op-1"
    with pytest.raises(ValueError, match="state"):
        Move(op_id, "shifting", "verifying", columns={"state": "succeeded"})


def test_of_two_writers_from_one_read_exactly_one_wins(store: Store) -> None:
    op_id = new_operation(store, kind="flag", state="watching", data={"judgements": []})

    def write(index: int) -> bool:
        move = Move(op_id, "watching", "watching", {"judgements": [index]}, from_seq=0)
        return store.operations.advance_operation(move, T0) is not None

    won = all_at_once(THREADS, write)
    assert won.count(True) == 1
    operation = store.operations.operation(op_id)
    assert operation is not None and operation.data["judgements"] == [won.index(True)]


def test_stale_locks_of_ended_operations_are_freed(store: Store) -> None:
    ended = new_operation(store, state="succeeded")
    live = new_operation(store, service="other", state="shifting")
    assert store.operations.acquire_lock("wa-backend", ended, T0)
    assert store.operations.acquire_lock("other", live, T0)
    assert store.operations.release_stale_locks() == ["wa-backend"]
    assert (
        store.operations.lock_holder("wa-backend") is None
        and store.operations.lock_holder("other") is not None
    )


# -- an operation born holding its service -------------------------------------------------------

OPENING = {
    "kind": "rollback",
    "service": "wa-backend",
    "state": "approved",  # runnable: a tick may start it the moment its row is visible
    "requested_by": "U0ANA",
    "channel": "C0INCIDENTS",
}


def _operations(store: Store) -> list[tuple[str, str]]:
    with store.session() as session:
        return [(o.id, o.state) for o in session.scalars(select(Operation))]


def test_ten_operations_opened_at_once_one_holds_the_service_the_others_leave_nothing(
    store: Store,
) -> None:
    """The losers of the race for a service never write a runnable row (another instance's
    tick would start it), nor any row at all."""

    def open_one(index: int) -> str:
        try:
            return store.operations.open_operation(T0, **OPENING, reason=f"r{index}").id
        except ServiceHeld:
            return ""

    opened = [o for o in all_at_once(THREADS, open_one) if o]
    assert len(opened) == 1
    assert _operations(store) == [(opened[0], "approved")]
    holder = store.operations.lock_holder("wa-backend")
    assert holder is not None and holder.operation_id == opened[0]


def test_an_operation_opened_after_an_unseen_one_ended_writes_nothing(store: Store) -> None:
    ran = new_operation(store, state="succeeded")
    unseen = Newest("rollback", ("succeeded", "failed"), None)
    with pytest.raises(NewerOperation):
        store.operations.open_operation(T0 + timedelta(seconds=1), unchanged=unseen, **OPENING)
    assert (
        _operations(store) == [(ran, "succeeded")]
        and store.operations.lock_holder("wa-backend") is None
    )
    seen = Newest("rollback", ("succeeded", "failed"), ran)
    opened = store.operations.open_operation(T0 + timedelta(seconds=1), unchanged=seen, **OPENING)
    assert store.operations.lock_holder("wa-backend").operation_id == opened.id  # type: ignore[union-attr]


def test_an_operation_takes_over_the_service_only_from_its_holder(store: Store) -> None:
    drill = new_operation(store, state="waiting_rollback")
    assert store.operations.acquire_lock("wa-backend", drill, T0)
    with pytest.raises(ServiceHeld):
        store.operations.open_operation(T0, take_over_from="someone-else", **OPENING)
    child = store.operations.open_operation(T0, take_over_from=drill, **OPENING)
    assert store.operations.lock_holder("wa-backend").operation_id == child.id  # type: ignore[union-attr]
    assert len(_operations(store)) == 2
