"""Blue/green releases end to end: `/deploy` through Bolt over HTTP, the real run_v2 and
monitoring_v3 clients against the emulators, and sandbox time moved on with `wait`."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import event

from bot.ops.release.states import ReleaseData
from bot.ports import ServiceRef, TrafficTarget
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from tests.conftest import sandbox_config
from tests.helpers import patches, run, serving

SERVICE = "wa-backend"
BLUE = "wa-backend-00003"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    return sandbox


def tags(box: Sandbox, service: str = SERVICE) -> dict[str, str]:
    return {r["tag"]: r["revision"] for r in box.emulator.cloudrun.traffic(service) if r["tag"]}


def release(box: Sandbox):
    from sqlalchemy import select

    from bot.store import Operation

    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == "release")
        return session.scalars(query.order_by(Operation.created_at.desc())).first()


def card(box: Sandbox) -> str:
    operation = release(box)
    message = box.emulator.slack.message(operation.channel, operation.message_ts)
    return json.dumps(message["blocks"], ensure_ascii=False)


def deploy(box: Sandbox, user: str = "marta", service: str = SERVICE) -> str:
    run(box, f"as {user}", f"/deploy {service} {IMAGE}")
    return release(box).to_revision


def ephemerals(box: Sandbox) -> list[str]:
    return [m["text"] for m in box.emulator.slack.messages() if m.get("ephemeral_to")]


# -- the happy path -------------------------------------------------------------------------------


def test_release_to_100_percent_with_a_tech_leads_approval(box: Sandbox) -> None:
    green = deploy(box)
    assert serving(box) == {BLUE: 90, green: 10} and tags(box) == {"green": green}
    assert release(box).state == "judging"
    run(box, "wait 6m")  # warm-up, and Monitoring shows the step's minutes ~3 min late
    assert serving(box) == {BLUE: 50, green: 50}
    run(box, "wait 6m")
    assert release(box).state == "awaiting_approval" and serving(box) == {BLUE: 50, green: 50}
    assert "Approve 100%" in card(box)

    run(box, "click Approve 100%")  # marta asked for it: not hers to approve
    run(box, "as pablo", "click Approve 100%")  # not a tech lead
    assert release(box).state == "awaiting_approval"
    assert sum("Only a *tech lead*" in n for n in ephemerals(box)) == 2

    run(box, "as luis", "click Approve 100%")
    assert serving(box) == {green: 100}
    run(box, "wait 7m")  # one more validation window at 100%
    operation = release(box)
    assert operation.state == "succeeded"
    assert serving(box) == {green: 100} and tags(box) == {}, "green is the new blue, untagged"
    assert "Released" in card(box)
    files = box.emulator.slack.files()
    assert files and files[-1]["name"].endswith(".png")
    judgements = [m for m in box.emulator.slack.messages() if m.get("thread_ts")]
    assert len(judgements) >= 3, "every judgement is in the thread"
    actions = [a.action for a in box.runtime.deps.store.journal.audit()]
    assert "release.approved" in actions and actions.count("release.judged") >= 3

    run(box, "as ana", "/rollback wa-backend")  # the old blue is the rollback target
    assert serving(box) == {BLUE: 100}


def test_staging_goes_straight_to_100_without_approval(box: Sandbox) -> None:
    green = deploy(box, user="pablo", service="wa-backend-staging")
    assert serving(box, "wa-backend-staging") == {green: 100}
    assert release(box).state == "succeeded"
    assert tags(box, "wa-backend-staging") == {}


# -- smoke tests ----------------------------------------------------------------------------------


def test_smoke_failure_leaves_green_at_zero_and_untagged(box: Sandbox) -> None:
    box.emulator.cloudrun.new_revision_behaviour(healthz_status=500)
    green = deploy(box)
    operation = release(box)
    assert operation.state == "failed"
    assert operation.data["outcome"]["code"] == "smoke_failed"
    assert serving(box) == {BLUE: 100} and tags(box) == {}
    assert "/health`" in card(box) and "500" in card(box) and "no user saw it" in card(box)
    top_level = [
        m
        for m in box.emulator.slack.messages("C0INCIDENTS")
        if not m.get("thread_ts") and not m.get("ephemeral_to")
    ]
    assert len(top_level) == 2, "the failure is announced, not only shown on the card"
    assert green in [
        r.name
        for r in box.runtime.deps.cloudrun.list_revisions(
            ServiceRef("runback-sandbox", "us-central1", SERVICE)
        )
    ]


# -- each row of the decision table during the canary ---------------------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [{"error_rate": 0.2}, {"p95_ms": 2600}, {"healthz_status": 503}],
    ids=["error-rate-over-5pc", "p95-over-2s", "healthz-fails"],
)
def test_bad_green_is_rolled_back_at_once(box: Sandbox, behaviour: dict[str, float]) -> None:
    green = deploy(box)
    box.emulator.cloudrun.set_behaviour(green, **behaviour)
    run(box, "wait 6m")
    operation = release(box)
    assert operation.state == "rolled_back"
    assert serving(box) == {BLUE: 100}
    assert operation.data["outcome"]["code"] == "judged_bad"
    assert green in box.runtime.deps.store.serving.rolled_back_from(SERVICE)
    assert "Rolled back" in card(box)


def test_observe_band_then_roll_back_when_not_recovered(box: Sandbox) -> None:
    green = deploy(box)
    box.emulator.cloudrun.set_behaviour(green, error_rate=0.03)
    run(box, "wait 6m")
    operation = release(box)
    assert operation.state == "judging" and operation.data["judgements"][-1]["verdict"] == "observe"
    assert serving(box) == {BLUE: 90, green: 10}, "observing keeps the step"
    for _ in range(5):
        run(box, "wait 1m")
    assert release(box).state == "rolled_back" and serving(box) == {BLUE: 100}


def test_observe_band_then_recovers_and_proceeds(box: Sandbox) -> None:
    green = deploy(box)
    box.emulator.cloudrun.set_behaviour(green, error_rate=0.02)
    for _ in range(7):  # until Monitoring shows the first minute at 2%: observed
        run(box, "wait 1m")
        if release(box).data["judgements"]:
            break
    assert release(box).data["judgements"][-1]["verdict"] == "observe"
    box.emulator.cloudrun.set_behaviour(green, error_rate=0.0)  # recovers at once
    for _ in range(6):  # the clean minutes show up in Monitoring ~3 minutes later
        run(box, "wait 1m")
    assert serving(box) == {BLUE: 50, green: 50}, "recovered within the window: next step"


def test_too_little_traffic_is_never_a_pass_and_asks_a_person(box: Sandbox) -> None:
    box.emulator.cloudrun.new_revision_behaviour(rps=0.2)  # ~1 request a minute at 10%
    green = deploy(box)
    run(box, "wait 6m")
    assert release(box).data["judgements"][-1]["verdict"] == "inconclusive"
    assert serving(box) == {BLUE: 90, green: 10}
    for _ in range(6):
        run(box, "wait 2m")
    assert release(box).state == "needs_human" and "Proceed" in card(box)
    run(box, "as pablo", "click Proceed")
    assert release(box).state == "needs_human", "a developer may not"
    run(box, "as marta", "click Proceed")
    assert serving(box) == {BLUE: 50, green: 50}


def test_monitoring_faults_never_pass() -> None:
    # Every judgement retries Monitoring until the retry deadline runs out, in real time: 0.4 s
    # (a retry or two) rather than the sandbox fixture's 1.5 s, over some fifteen judgements.
    box = Sandbox(sandbox_config(), retry_deadline_s=0.4)
    try:
        green = deploy(box)
        box.emulator.router.faults.add(Fault("monitoring.timeSeries.list", 503, times=None))
        for _ in range(8):
            run(box, "wait 2m")
        operation = release(box)
        assert operation.state == "needs_human"
        assert {j["verdict"] for j in operation.data["judgements"]} == {"inconclusive"}
        assert serving(box) == {BLUE: 90, green: 10}
    finally:
        box.close()


# -- approvals and people --------------------------------------------------------------------------


def test_expired_approval_rolls_back(box: Sandbox) -> None:
    green = deploy(box)
    run(box, "wait 6m", "wait 6m")
    assert release(box).state == "awaiting_approval"
    run(box, "wait 31m")
    operation = release(box)
    assert operation.state == "rolled_back"
    assert operation.data["outcome"]["code"] == "approval_expired"
    assert serving(box) == {BLUE: 100} and green not in serving(box)


def test_roll_back_button_needs_a_role(box: Sandbox) -> None:
    deploy(box)
    run(box, "as pablo", "click Roll back")
    assert release(box).state == "judging"
    assert any("senior developer" in n for n in ephemerals(box))
    run(box, "as ana", "click Roll back")
    assert release(box).state == "rolled_back" and serving(box) == {BLUE: 100}


def test_on_call_rollback_during_a_release_aborts_it(box: Sandbox) -> None:
    deploy(box)
    run(box, "wait 3m")
    run(box, "as ana", "/rollback wa-backend")
    operation = release(box)
    assert operation.state == "rolled_back" and serving(box) == {BLUE: 100}
    assert operation.data["outcome"] == {"code": "rolled_back_by", "by": "U0ANA"}


def test_an_on_call_rollback_while_cloud_run_applies_a_step_is_never_overwritten(
    box: Sandbox,
) -> None:
    """The step's result, committed once Cloud Run has applied the 10%, must not undo the
    rollback recorded while it waited (it used to go on judging at 10%, the rollback lost)."""
    box.emulator.cloudrun.operation_delay_s = 2.0
    run(box, "as marta")
    box.post(box.slash_body(f"/deploy {SERVICE} {IMAGE}"))

    def applying_the_10_percent() -> bool:
        operation = release(box)
        pending = (operation.data.get("pending") or {}) if operation else {}
        return pending.get("purpose") == "shift"

    deadline = time.monotonic() + 30
    while not applying_the_10_percent():
        assert time.monotonic() < deadline, "the release never applied its first step"
        time.sleep(0.05)
    run(box, "as ana", "/rollback wa-backend carts break")
    box.runtime.engine.wait_idle(timeout_s=30)
    operation = release(box)
    assert operation.state == "rolled_back", operation.state
    assert operation.data["outcome"]["code"] == "rolled_back_by"
    assert serving(box) == {BLUE: 100}


def test_an_on_call_rollback_right_after_cloud_run_applied_a_step_stands(box: Sandbox) -> None:
    """At the release's own save of "Cloud Run applied the 10%" (nothing pending any more, the
    next state not yet written): the rollback is decided on that and is not undone by the
    step's next write. The store's after-commit event of that save places it exactly there."""
    from bot.ops.release import roll_back

    deps = box.runtime.deps
    fired, once = threading.Event(), threading.Lock()

    def on_call_rollback_right_after(_session: object) -> None:
        if not threading.current_thread().name.startswith("runback-op") or fired.is_set():
            return
        if not once.acquire(blocking=False):
            return  # this thread's own reads below commit too
        try:
            current = release(box)
            if current is None or current.state != "applying" or current.data.get("pending"):
                return
            data = ReleaseData.of(current)
            if data.step != 0 or data.expected is None:
                return
            fired.set()
            roll_back(deps, current.id, "U0ANA", "carts break")
        finally:
            once.release()

    sessions = deps.store._sessions
    event.listen(sessions, "after_commit", on_call_rollback_right_after)
    try:
        run(box, "as marta")
        box.post(box.slash_body(f"/deploy {SERVICE} {IMAGE}"))
        deadline = time.monotonic() + 30
        while not fired.is_set():
            assert time.monotonic() < deadline, "the release never applied its first step"
            time.sleep(0.05)
        box.runtime.engine.wait_idle(timeout_s=30)
    finally:
        event.remove(sessions, "after_commit", on_call_rollback_right_after)
    operation = release(box)
    assert operation.state == "rolled_back", operation.state
    assert operation.data["outcome"]["code"] == "rolled_back_by"
    assert serving(box) == {BLUE: 100}


def test_pause_holds_the_step_and_resume_continues(box: Sandbox) -> None:
    green = deploy(box)
    run(box, "click Pause")
    run(box, "wait 10m")
    assert release(box).state == "paused" and serving(box) == {BLUE: 90, green: 10}
    run(box, "click Resume", "wait 5m")
    assert serving(box) == {BLUE: 50, green: 50}


def test_traffic_moved_in_the_console_pauses_the_release(box: Sandbox) -> None:
    green = deploy(box)
    cloudrun = box.runtime.deps.cloudrun
    ref = ServiceRef("runback-sandbox", "us-central1", SERVICE)
    state = cloudrun.get_service(ref)
    name = cloudrun.start_traffic_update(
        ref, [TrafficTarget(BLUE, 100), TrafficTarget(green, 0, "green")], state.etag
    )
    cloudrun.wait_operation(name, 10)
    run(box, "wait 3m")
    operation = release(box)
    assert operation.state == "paused" and operation.data["pause_reason"] == "out_of_band"
    assert "changed outside Runback" in card(box)
    assert serving(box) == {BLUE: 100}, "Runback does not fight the person"


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/deploy", "Usage: `/deploy SERVICE IMAGE"),
        ("/deploy wa-backend", "Usage: `/deploy SERVICE IMAGE"),
        ("/deploy wa-frontend " + IMAGE, "wa-backend-staging"),
        ("/deploy wa-backend not an image", "Usage"),
        ("/deploy wa-backend <!channel>", "not a container image"),
        ("/deploy wa-backend UPPER/Case:1", "not a container image"),
    ],
)
def test_bad_deploy_input_changes_nothing(box: Sandbox, line: str, expected: str) -> None:
    output = run(box, "as marta", line)
    assert expected in output + "\n".join(ephemerals(box))
    assert len(patches(box)) == 0 and release(box) is None


def test_developer_cannot_release_to_production(box: Sandbox) -> None:
    run(box, "as pablo", f"/deploy wa-backend {IMAGE}")
    assert any("senior developer" in n for n in ephemerals(box))
    assert len(patches(box)) == 0


def test_second_deploy_while_one_runs_is_told_who_runs_what(box: Sandbox) -> None:
    deploy(box)
    run(box, "as luis", f"/deploy wa-backend {IMAGE}")
    assert any("is busy" in n and "<@U0MARTA>" in n for n in ephemerals(box))
    assert len(patches(box)) == 2  # the first release's deploy and 10% shift only


# -- restarts and the scheduler ------------------------------------------------------------------


def test_a_judgement_due_while_the_bot_was_down_is_made_at_once(box: Sandbox) -> None:
    green = deploy(box)
    run(box, "wait 6m")
    assert serving(box) == {BLUE: 50, green: 50}
    judged = len(release(box).data["judgements"])
    patches_before = len(patches(box))
    box.runtime.engine.shutdown(wait=False)  # the bot goes away mid-step...
    box.clock.advance(420)  # ...and the next judgement (on minutes now visible) falls due
    box.restart_bot()
    operation = release(box)
    assert len(operation.data["judgements"]) == judged + 1, "judged at once on restart"
    assert operation.state == "awaiting_approval"
    assert len(patches(box)) == patches_before, "nothing applied twice"


def test_tasks_tick_advances_due_work_and_needs_its_token() -> None:
    box = Sandbox(sandbox_config(), retry_deadline_s=1.5, scheduler=False)  # Cloud Scheduler
    try:
        deploy(box)
        box.clock.advance(360)  # a minute after the warm-up is visible: something to judge
        url = box.bot_url.replace("/slack/events", "/tasks/tick")
        assert box.http.post(url, timeout=5).status_code == 401
        assert box.http.post(url, params={"token": "nope"}, timeout=5).status_code == 401
        box.runtime.engine.wait_idle()
        assert len(release(box).data["judgements"]) == 0, "nothing runs without a tick"
        bearer = {"Authorization": f"Bearer {box.alert_token}"}
        assert box.http.post(url, headers=bearer, timeout=10).status_code == 200
        box.runtime.engine.wait_idle()
        assert len(release(box).data["judgements"]) == 1
    finally:
        box.close()


def test_smoke_failure_on_metrics(box: Sandbox) -> None:
    box.emulator.router.faults.add(Fault("service.metrics", 500, times=None))
    deploy(box)
    operation = release(box)
    assert operation.state == "failed" and operation.data["outcome"]["check"] == "/metrics"
    assert serving(box) == {BLUE: 100} and tags(box) == {}


def test_a_change_slower_than_the_timeout_is_followed_not_failed() -> None:
    config = sandbox_config()
    config = config.model_copy(
        update={"release": config.release.model_copy(update={"operation_timeout_s": 0.3})}
    )
    box = Sandbox(config, retry_deadline_s=1.5)
    try:
        box.emulator.cloudrun.operation_delay_s = 1.5
        green = deploy(box)
        operation = release(box)
        assert operation.state == "judging", operation.data.get("outcome")
        assert serving(box) == {BLUE: 90, green: 10}
        events = [e.kind for e in box.runtime.deps.store.journal.timeline(operation.id)]
        assert "operation_slow" in events and "failed" not in events
        assert len(patches(box)) == 2, "the deploy and the 10% shift, each sent once"
    finally:
        box.close()


# -- Cloud Run operations that fail, and bugs ------------------------------------------------------


def top_level_messages(box: Sandbox) -> list[dict]:
    return [
        m
        for m in box.emulator.slack.messages("C0INCIDENTS")
        if not m.get("thread_ts") and not m.get("ephemeral_to")
    ]


def test_failed_deploy_operation_ends_the_release_and_leaves_blue_alone(box: Sandbox) -> None:
    box.emulator.cloudrun.fail_next_operations("quota exceeded for revisions")
    deploy(box)
    operation = release(box)
    assert operation.state == "failed"
    assert operation.data["outcome"]["code"] == "deploy_failed"
    assert "quota exceeded" in operation.data["outcome"]["detail"]
    assert serving(box) == {BLUE: 100} and len(patches(box)) == 1, "nothing else was tried"
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None
    assert len(top_level_messages(box)) == 2, "the failure is announced, not only on the card"


def test_failed_shift_operation_goes_back_to_blue(box: Sandbox) -> None:
    green = deploy(box)
    assert serving(box) == {BLUE: 90, green: 10}
    box.emulator.cloudrun.fail_next_operations("the 50% shift was refused")
    run(box, "wait 6m")  # healthy at 10% (Monitoring shows it ~3 min late): the 50% shift fails
    operation = release(box)
    assert operation.state == "rolled_back"
    assert operation.data["outcome"]["code"] == "shift_failed"
    assert "refused" in operation.data["outcome"]["detail"]
    assert serving(box) == {BLUE: 100}
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None


def test_failed_finalize_operation_goes_back_to_blue(box: Sandbox) -> None:
    green = deploy(box)
    run(box, "wait 6m", "wait 6m", "as luis", "click Approve 100%")
    assert serving(box) == {green: 100} and release(box).state == "judging"
    box.emulator.cloudrun.fail_next_operations("could not untag green")
    run(box, "wait 7m")  # validated at 100%: the finalizing PATCH's operation fails
    operation = release(box)
    assert operation.state == "rolled_back"
    assert operation.data["outcome"]["code"] == "finalize_failed"
    assert serving(box) == {BLUE: 100}
    assert green in box.runtime.deps.store.serving.rolled_back_from(SERVICE)


def test_an_unexpected_error_in_a_release_goes_back_to_blue_loudly(box: Sandbox) -> None:
    green = deploy(box)
    store = box.runtime.deps.store
    operation = release(box)
    # A bug's worth of bad data: the next canary step does not exist.
    bad = ReleaseData.of(operation).changed(percents=[10])
    store.operations.merge_data(operation.id, box.clock.now(), **bad.stored())
    run(box, "wait 6m")  # judged healthy (Monitoring ~3 min late): the missing step is the bug
    operation = release(box)
    assert operation.state == "rolled_back"
    assert operation.data["outcome"]["code"] == "internal"
    assert serving(box) == {BLUE: 100} and green not in serving(box)
    assert store.operations.lock_holder(SERVICE) is None
    assert "Rolled back" in card(box)
