"""Feature flags end to end: `/flag` through Bolt over HTTP, the real run_v2 and monitoring_v3
clients against the emulators, the services' own /config/flags, sandbox time moved with `wait`."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import event, select

from bot.ops.flags import FINAL_STATES
from bot.ops.flags.people import roll_back, roll_back_from
from bot.ops.flags.record import Superseded
from bot.ops.flags.states import FlagData
from bot.ops.preemption import rollback_past
from bot.ops.rollback import RollbackRequest, authorize_request
from bot.ports import ServiceRef
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.http import Fault
from bot.store import Operation
from tests.conftest import sandbox_config
from tests.helpers import patches, run, serving, wait_until

SERVICE = "wa-backend"
BEFORE = "wa-backend-00003"  # serves 100% in the sandbox, NEW_CHECKOUT=false, BETA_SEARCH=true
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.2.0"
REF = ServiceRef("runback-sandbox", "us-central1", SERVICE)


@pytest.fixture
def box(sandbox: Sandbox) -> Sandbox:
    return sandbox


def patch_bodies(box: Sandbox) -> list[dict]:
    return [call.body for call in patches(box)]


def tags(box: Sandbox, service: str = SERVICE) -> dict[str, str]:
    return {r["tag"]: r["revision"] for r in box.emulator.cloudrun.traffic(service) if r["tag"]}


def flip(box: Sandbox) -> Operation:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == "flag")
        found = session.scalars(query.order_by(Operation.created_at.desc())).first()
    assert found is not None, "no flag flip was recorded"
    return found


def flips(box: Sandbox) -> int:
    with box.runtime.deps.store.session() as session:
        return len(list(session.scalars(select(Operation).where(Operation.kind == "flag"))))


def card(box: Sandbox) -> str:
    operation = flip(box)
    message = box.emulator.slack.message(operation.channel, operation.message_ts)
    return json.dumps(message["blocks"], ensure_ascii=False)


def ephemerals(box: Sandbox) -> list[str]:
    return [m["text"] for m in box.emulator.slack.messages() if m.get("ephemeral_to")]


def top_level(box: Sandbox) -> list[dict]:
    return [
        m
        for m in box.emulator.slack.messages("C0INCIDENTS")
        if not m.get("thread_ts") and not m.get("ephemeral_to")
    ]


def targets(body: dict) -> set[tuple[str, int, str]]:
    return {(t["revision"], t.get("percent", 0), t.get("tag", "")) for t in body["traffic"]}


def env_of(box: Sandbox, revision: str) -> dict[str, str]:
    found = box.runtime.deps.cloudrun.get_revision(REF, revision)
    return {var.name: var.value for var in found.env}


def audit(box: Sandbox) -> list[tuple[str, str]]:
    return [(a.action, a.outcome) for a in box.runtime.deps.store.journal.audit()]


# -- the happy path -------------------------------------------------------------------------------


def test_flag_on_then_off_each_one_env_patch_checked_watched_and_kept(box: Sandbox) -> None:
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on ready for everyone")
    on = flip(box)
    new = on.to_revision
    assert on.state == "watching" and serving(box) == {new: 100}
    assert tags(box) == {}, "the flag tag went with the 100% step"
    deploy, shift = patch_bodies(box)
    assert targets(deploy) == {(BEFORE, 100, ""), (new, 0, "flag")}, "every target pinned"
    assert deploy["template"]["revision"] == new
    assert targets(shift) == {(new, 100, "")}
    before, after = env_of(box, BEFORE), env_of(box, new)
    assert after == {**before, "FEATURE_FLAG_NEW_CHECKOUT": "true"}, "only that variable changed"
    assert list(after) == list(before), "in its place, the rest in order"
    revision = box.runtime.deps.cloudrun.get_revision(REF, new)
    assert revision.image == box.emulator.cloudrun.images.resolve(IMAGE), "the same image, pinned"
    assert box.emulator.cloudrun.revision_flags(new)["NEW_CHECKOUT"] == "true"

    run(box, "wait 9m")  # the watch, and Monitoring's minutes ~3 min late
    done = flip(box)
    kept = FlagData.of(done)
    assert done.state == "succeeded" and kept.outcome == {"code": "kept"}
    assert kept.stored() == {k: v for k, v in done.data.items() if k != "seq"}, "as typed"
    assert serving(box) == {new: 100}
    assert "NEW_CHECKOUT" in card(box) and "Done" in card(box)
    assert len(top_level(box)) == 1, "one live card, updated in place"
    assert {"watch", "verify", "shift", "deploy"} <= set(kept.steps)
    assert all(step.status == "done" for step in kept.steps.values())
    assert ("flag.requested", "ok") in audit(box) and ("flag.succeeded", "ok") in audit(box)
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None

    run(box, "/flag wa-backend FEATURE_FLAG_NEW_CHECKOUT off")  # the prefix is accepted too
    off = flip(box)
    assert off.id != on.id and off.from_revision == new and off.state == "watching"
    assert env_of(box, off.to_revision)["FEATURE_FLAG_NEW_CHECKOUT"] == "false"
    run(box, "wait 9m")
    assert flip(box).state == "succeeded" and serving(box) == {off.to_revision: 100}


def test_a_staging_flag_flip_is_automatic_for_a_developer(box: Sandbox) -> None:
    run(box, "as pablo", "/flag wa-backend-staging BETA_SEARCH off")
    operation = flip(box)
    assert operation.state == "watching"
    assert serving(box, "wa-backend-staging") == {operation.to_revision: 100}
    approval = next(
        a for a in box.runtime.deps.store.journal.audit() if a.action == "flag.requested"
    )
    assert approval.detail["approval"] == "auto"


# -- /flag SERVICE: the environment beside the service's own answer -------------------------------


def test_listing_marks_each_mismatch_with_the_services_own_answer(box: Sandbox) -> None:
    run(box, "as pablo")
    shown = run(box, "/flag wa-backend")
    assert "✅ `BETA_SEARCH` — env: `true` · service says: on" in shown
    assert "✅ `NEW_CHECKOUT` — env: `false` · service says: off" in shown
    assert "mismatch" not in shown

    box.emulator.cloudrun.set_config_flags(BEFORE, {"NEW_CHECKOUT": True, "DARK_MODE": False})
    shown = run(box, "/flag wa-backend")
    assert "⚠️ `NEW_CHECKOUT` — env: `false` · service says: on *(mismatch)*" in shown
    assert "⚠️ `BETA_SEARCH` — env: `true` · service says: — *(not reported" in shown
    assert "⚠️ `DARK_MODE` — env: unset · service says: off *(not in the environment)*" in shown
    assert "3 to check" in shown

    box.emulator.cloudrun.set_config_flags(BEFORE, status=503)
    shown = run(box, "/flag wa-backend")
    assert "could not be read" in shown and "HTTP 503" in shown
    assert "env: `true`" in shown, "the environment is still shown"
    assert patches(box) == [], "listing changes nothing"


# -- bad input and refusals: a clear note, nothing changed ----------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/flag wa-backend new-checkout on", "Did you mean `NEW_CHECKOUT`?"),
        ("/flag wa-backend NEW$CHECKOUT on", "is not a flag name"),
        ("/flag wa-backend FEATURE_FLAG_ on", "is not a flag name"),
        ("/flag wa-backend NEW_CHECKOUT maybe", "Say `on` or `off`"),
        ("/flag wa-backend NEW_CHECKOUT", "Usage: `/flag SERVICE`"),
        ("/flag", "Usage: `/flag SERVICE`"),
        ("/flag wa-frontend NEW_CHECKOUT on", "I don't manage a service called `wa-frontend`"),
        ("/flag wa-frontend", "I don't manage a service called `wa-frontend`"),
        ("/flag wa-backend BETA_SEARCH on", "already on"),
    ],
)
def test_bad_flag_input_is_refused_clearly_and_changes_nothing(
    box: Sandbox, line: str, expected: str
) -> None:
    shown = run(box, "as marta", line)
    assert expected in shown, shown
    assert patches(box) == [] and flips(box) == 0
    assert serving(box) == {BEFORE: 100}


def test_who_may_flip_follows_the_matrix(box: Sandbox) -> None:
    shown = run(box, "as pablo", "/flag wa-backend NEW_CHECKOUT on")  # a developer, production
    assert "needs the *senior developer* role" in shown
    shown = run(box, "as eve", "/flag wa-backend-staging NEW_CHECKOUT on")  # no role at all
    assert "needs the *developer* role" in shown
    assert patches(box) == [] and flips(box) == 0
    refused = [a for a in box.runtime.deps.store.journal.audit() if a.action == "flag.refused"]
    assert [a.actor for a in refused] == ["U0PABLO", "U0EVE"]
    assert all(a.detail["why"] == "role_required" for a in refused)


def test_refused_while_a_release_runs_on_the_service(box: Sandbox) -> None:
    run(box, "as marta", f"/deploy wa-backend {IMAGE.replace('v1.2.0', 'v1.3.0')}")
    before = len(patches(box))
    shown = run(box, "/flag wa-backend NEW_CHECKOUT on")
    assert "is busy" in shown and "release" in shown
    assert len(patches(box)) == before and flips(box) == 0
    assert ("flag.refused", "refused") in audit(box)


def test_a_release_waits_for_a_running_flip(box: Sandbox) -> None:
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    assert flip(box).state == "watching"
    shown = run(box, f"/deploy wa-backend {IMAGE.replace('v1.2.0', 'v1.3.0')}")
    assert "is busy" in shown and "feature flag flip" in shown and "watching" in shown


# -- trouble --------------------------------------------------------------------------------------


def test_a_bad_flag_revision_is_rolled_back_to_the_previous_one_at_once(box: Sandbox) -> None:
    box.emulator.cloudrun.new_revision_behaviour(error_rate=0.2)  # healthy, but its errors
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    new = flip(box).to_revision
    assert serving(box) == {new: 100}
    run(box, "wait 6m")
    operation = flip(box)
    assert operation.state == "rolled_back", operation.data.get("outcome")
    assert operation.data["outcome"] == {"code": "judged_bad", "reasons": ["error_rate_high"]}
    assert serving(box) == {BEFORE: 100}, "back on the previous revision"
    assert env_of(box, BEFORE)["FEATURE_FLAG_NEW_CHECKOUT"] == "false", "the flag as it was"
    assert [t["revision"] for t in patch_bodies(box)[-1]["traffic"]] == [BEFORE]
    assert len(patches(box)) == 3, "deploy, 100%, back: no second env change"
    alerts = [m for m in top_level(box) if "Traffic is back on" in m["text"]]
    assert len(alerts) == 1, "said as a new message, not only on the card"
    assert ("flag.rolled_back", "rolled_back") in audit(box)
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None


def test_roll_back_now_on_the_card_returns_traffic_at_once(box: Sandbox) -> None:
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    run(box, "as pablo", "click Roll back now")  # a developer may not
    assert "Only a *senior developer*" in "\n".join(ephemerals(box))
    assert flip(box).state == "watching"
    run(box, "as ana", "click Roll back now")
    operation = flip(box)
    assert operation.state == "rolled_back"
    assert operation.data["outcome"]["code"] == "rolled_back_by"
    assert serving(box) == {BEFORE: 100}


def test_a_release_after_a_rolled_back_flip_keeps_the_flag_as_blue_has_it(box: Sandbox) -> None:
    """The service's template still holds the flipped variable after Roll back now; green is
    built from blue (the revision serving), so the next release does not switch it on again."""
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on", "as ana", "click Roll back now")
    assert serving(box) == {BEFORE: 100}
    run(
        box,
        "as marta",
        "/deploy wa-backend us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0",
    )
    release = box.runtime.deps.store.operations.operation(
        next(o.id for o in top_operations(box, "release"))
    )
    assert release is not None and release.to_revision in serving(box)
    assert env_of(box, release.to_revision)["FEATURE_FLAG_NEW_CHECKOUT"] == "false"
    assert env_of(box, release.to_revision)["FEATURE_FLAG_BETA_SEARCH"] == "true"


def top_operations(box: Sandbox, kind: str) -> list[Operation]:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == kind)
        return list(session.scalars(query.order_by(Operation.created_at.desc())))


def test_an_unhealthy_flag_revision_never_gets_traffic(box: Sandbox) -> None:
    box.emulator.cloudrun.new_revision_behaviour(healthz_status=500)
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    operation = flip(box)
    assert operation.state == "failed" and operation.data["outcome"]["code"] == "unhealthy"
    assert serving(box) == {BEFORE: 100} and tags(box) == {}
    assert "never had traffic" in card(box)


def test_a_service_that_does_not_read_the_variable_never_gets_traffic(box: Sandbox) -> None:
    box.emulator.router.faults.add(Fault("service.config_flags", 404, times=None))
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    operation = flip(box)
    assert operation.state == "failed"
    assert operation.data["outcome"]["code"] == "flags_unreadable"
    assert serving(box) == {BEFORE: 100} and tags(box) == {}


def test_patch_503s_are_retried_then_said_clearly(box: Sandbox) -> None:
    box.emulator.router.faults.add(Fault("run.services.patch", 503, times=2))
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    assert flip(box).state == "watching", "two 503s are retried"
    run(box, "wait 9m")
    assert flip(box).state == "succeeded"

    before = len(patches(box))
    box.emulator.router.faults.add(Fault("run.services.patch", 503, times=None))
    run(box, "/flag wa-backend NEW_CHECKOUT off")
    operation = flip(box)
    assert operation.state == "failed" and operation.data["outcome"]["code"] == "deploy_failed"
    assert len(patches(box)) > before + 1, "retried before giving up"
    assert operation.data["traffic_now"] == serving(box), "the traffic as it is, read fresh"
    alert = top_level(box)[-1]["text"]
    assert "failed" in alert
    assert "did not take the new revision" in card(box) and "were retried first" in card(box)
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None


def test_a_revision_that_fails_to_start_leaves_traffic_alone(box: Sandbox) -> None:
    box.emulator.cloudrun.fail_next_revisions()
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    operation = flip(box)
    assert operation.state == "failed" and operation.data["outcome"]["code"] == "deploy_failed"
    assert "failed to start" in operation.data["outcome"]["detail"]
    assert serving(box) == {BEFORE: 100} and operation.data["traffic_now"] == {BEFORE: 100}


def test_a_100_percent_step_that_fails_goes_back_to_the_previous_revision(box: Sandbox) -> None:
    box.emulator.cloudrun.operation_delay_s = 1.0
    run(box, "as marta")
    box.post(box.slash_body("/flag wa-backend NEW_CHECKOUT on"))
    wait_until(lambda: len(patches(box)) == 1, what="the env PATCH")
    box.emulator.cloudrun.fail_next_operations("RESOURCE_EXHAUSTED: quota", times=1)  # the 100%
    wait_until(lambda: flip(box).state in ("rolled_back", "failed"), what="the flip to end")
    box.runtime.engine.wait_idle(timeout_s=30)
    operation = flip(box)
    assert operation.state == "rolled_back"
    assert operation.data["outcome"]["code"] == "shift_failed"
    assert serving(box) == {BEFORE: 100} and operation.data["traffic_now"] == {BEFORE: 100}
    assert "Moving traffic to the new revision failed" in card(box)
    assert ("cloudrun.flag_shift", "failed") in audit(box)


def test_an_on_call_rollback_during_a_flip_takes_it_back(box: Sandbox) -> None:
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    run(box, "as ana", "/rollback wa-backend the new checkout breaks carts")
    operation = flip(box)
    assert operation.state == "rolled_back"
    assert operation.data["outcome"]["reason"] == "the new checkout breaks carts"
    assert serving(box) == {BEFORE: 100}


def test_an_on_call_rollback_while_cloud_run_applies_the_100_step_is_never_lost(
    box: Sandbox,
) -> None:
    box.emulator.cloudrun.operation_delay_s = 1.0  # the flip waits for Cloud Run meanwhile
    run(box, "as marta")
    box.post(box.slash_body("/flag wa-backend NEW_CHECKOUT on"))  # acked; the flip runs on
    wait_until(lambda: len(patches(box)) == 2, what="the 100% PATCH")
    wait_until(lambda: flip(box).state == "applying", what="the flip to wait for Cloud Run")
    run(box, "as ana", "/rollback wa-backend carts break")
    box.runtime.engine.wait_idle(timeout_s=30)
    operation = flip(box)
    assert operation.state == "rolled_back", operation.state
    assert serving(box) == {BEFORE: 100}
    assert targets(patch_bodies(box)[-1]) == {(BEFORE, 100, "")}


def test_roll_back_now_before_traffic_moved_only_removes_the_tag(box: Sandbox) -> None:
    box.emulator.cloudrun.operation_delay_s = 1.0  # Cloud Run is still creating the revision
    run(box, "as marta")
    box.post(box.slash_body("/flag wa-backend NEW_CHECKOUT on"))
    wait_until(lambda: len(patches(box)) == 1, what="the env PATCH")
    wait_until(lambda: "Roll back now" in json.dumps(box.emulator.slack.messages()), what="card")
    run(box, "click Roll back now")
    box.runtime.engine.wait_idle(timeout_s=30)
    operation = flip(box)
    assert operation.state == "cancelled", operation.state
    assert operation.data["outcome"]["code"] == "stopped"
    assert serving(box) == {BEFORE: 100} and tags(box) == {}
    assert all("template" not in body for body in patch_bodies(box)[1:]), "no second env change"
    assert "flag" not in {t[2] for body in patch_bodies(box)[1:] for t in targets(body)}


def test_a_rollback_after_a_kept_flip_goes_back_to_the_revision_before_it(box: Sandbox) -> None:
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on", "wait 9m")
    assert flip(box).state == "succeeded"
    run(box, "as ana", "/rollback wa-backend")
    assert serving(box) == {BEFORE: 100}, "the flag as it was, not an older revision"


def test_an_unexpected_error_in_a_flip_goes_back_loudly(box: Sandbox) -> None:
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    operation = flip(box)
    # A bug's worth of bad data: the watch does not know when traffic moved.
    box.runtime.deps.store.operations.merge_data(
        operation.id, box.clock.now(), shifted_at="not a time"
    )
    run(box, "wait 6m")
    operation = flip(box)
    assert operation.state == "rolled_back"
    assert operation.data["outcome"]["code"] == "internal"
    assert serving(box) == {BEFORE: 100}
    assert box.runtime.deps.store.operations.lock_holder(SERVICE) is None


# -- durable: a restart mid-flip resumes without sending anything twice ---------------------------


def test_a_restart_mid_flip_resumes_where_it_stopped() -> None:
    config = sandbox_config()
    slow = config.release.model_copy(update={"operation_timeout_s": 0.2})
    box = Sandbox(config.model_copy(update={"release": slow}), retry_deadline_s=1.5)
    try:
        box.emulator.cloudrun.operation_delay_s = 6.0  # Cloud Run is slow to apply the env change
        run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
        operation = flip(box)
        assert operation.state == "applying" and operation.data["pending"]["purpose"] == "deploy"
        # the env change keeps its 6 s (an operation's end is fixed when it is sent); the 100%
        # shift after the restart is applied at once
        box.emulator.cloudrun.operation_delay_s = 0.0
        box.runtime.engine.shutdown(wait=True)  # the bot goes away while Cloud Run works
        assert len(patches(box)) == 1
        box.restart_bot()
        wait_until(lambda: flip(box).state == "watching", what="the flip resumed after restart")
        assert len(patches(box)) == 2, "the env change once, then 100%"
        new = flip(box).to_revision
        assert serving(box) == {new: 100}
        events = [e.kind for e in box.runtime.deps.store.journal.timeline(operation.id)]
        assert events.count("deployed") == 1
        names = [r.name for r in box.runtime.deps.cloudrun.list_revisions(REF)]
        assert names.count(new) == 1 and len(names) == 4
    finally:
        box.close()


# -- incidents: on the timeline and in the postmortem ---------------------------------------------


def test_a_flip_during_an_incident_is_on_its_timeline_and_in_the_postmortem(box: Sandbox) -> None:
    box.emulator.cloudrun.set_behaviour(BEFORE, error_rate=0.02)  # the observe band
    run(box, "as ana", "alert wa-backend")
    incident = box.runtime.deps.store.incidents.open_incidents(SERVICE)[0]
    box.emulator.cloudrun.new_revision_behaviour(error_rate=0.2)
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on the checkout fix")
    run(box, "wait 6m")
    assert flip(box).state == "rolled_back"
    kinds = [e.kind for e in box.runtime.deps.store.journal.timeline(incident.id)]
    assert "flag_requested" in kinds and "flag_shifted" in kinds and "flag_rolled_back" in kinds
    posted = [f for f in box.emulator.slack.files() if f["name"].startswith("postmortem-")]
    assert posted, "the flag's rollback made traffic safe: the postmortem draft is posted"
    text = box.emulator.slack.file_content(posted[-1]["id"]).decode()
    assert "Feature flag flip requested" in text and "Flag flip rolled back" in text


# -- races: a person's rollback against the flip's own steps --------------------------------------
# Each test holds the flip at one moment (Cloud Run's operation delay, sandbox time) and makes the
# person's write from what they read earlier, as a slow request would.

ON_CALL = "U0ANA"


def pending(box: Sandbox) -> str:
    """What the flip waits for Cloud Run to apply ("" if nothing, or no flip yet)."""
    if not flips(box):
        return ""
    operation = flip(box)
    return (operation.data.get("pending") or {}).get("purpose", "")


def on_call_request(reason: str = "carts break") -> RollbackRequest:
    return RollbackRequest(SERVICE, None, reason, ON_CALL, "C0INCIDENTS", from_command=True)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_on_call_rollback_between_two_commits_of_the_flip_is_never_overwritten(
    database: str, request: pytest.FixtureRequest
) -> None:
    """The bench's lost rollback (bench/flags.py under CPU load): the flip saved "Cloud Run
    applied the 100% step" (`applying`, nothing pending), the on-call /rollback moved it to
    `rolling_back`, and the flip, having read itself back only after that, moved on from
    `rolling_back` to `watching`: the new revision kept 100%, nobody was told. Here the
    /rollback runs at exactly that moment: the store's own after-commit event of that save."""
    box: Sandbox = request.getfixturevalue("box" if database == "sqlite" else "pg_sandbox")
    deps = box.runtime.deps
    fired, once = threading.Event(), threading.Lock()

    def on_call_rollback_right_after(_session: object) -> None:
        # only the flip's own commits (the engine's thread), and only once
        if not threading.current_thread().name.startswith("runback-op") or fired.is_set():
            return
        if not once.acquire(blocking=False):
            return  # this thread's own reads below commit too
        try:
            current = flip(box) if flips(box) else None
            if current is None or current.state != "applying" or current.data.get("pending"):
                return
            if "shift" not in current.data["steps"]:
                return  # the env change was applied: not yet the moment
            fired.set()
            roll_back(deps, current.id, ON_CALL, "carts break")
        finally:
            once.release()

    sessions = deps.store._sessions
    event.listen(sessions, "after_commit", on_call_rollback_right_after)
    try:
        run(box, "as marta")
        box.post(box.slash_body("/flag wa-backend NEW_CHECKOUT on"))
        wait_until(fired.is_set, what="the flip's save after Cloud Run applied the 100% step")
        box.runtime.engine.wait_idle(timeout_s=30)
    finally:
        event.remove(sessions, "after_commit", on_call_rollback_right_after)
    operation = flip(box)
    assert operation.state == "rolled_back", operation.state
    assert operation.data["outcome"]["code"] == "rolled_back_by"
    assert serving(box) == {BEFORE: 100}


def test_a_rollback_read_while_the_env_change_applied_is_decided_again_at_the_100_step(
    box: Sandbox,
) -> None:
    """`applying` the env change, then `applying` the 100% step: the same state twice. Decided
    on the first ("stop before any traffic moved") and written during the second, it would
    end the flip "stopped" with the new revision serving 100%: a lost emergency rollback."""
    box.emulator.cloudrun.operation_delay_s = 1.0
    run(box, "as marta")
    box.post(box.slash_body("/flag wa-backend NEW_CHECKOUT on"))
    wait_until(lambda: pending(box) == "deploy", what="the flip to wait for its env change")
    read_then = flip(box)
    box.emulator.cloudrun.operation_delay_s = 3.0  # Cloud Run takes its time with the 100%
    wait_until(lambda: pending(box) == "shift", what="the flip to wait for its 100% step")
    with pytest.raises(Superseded):
        roll_back_from(box.runtime.deps, read_then, ON_CALL, "carts break")
    assert flip(box).state == "applying" and pending(box) == "shift", "nothing was written"

    box.emulator.cloudrun.operation_delay_s = 0.0
    run(box, "as ana", "/rollback wa-backend carts break")  # decided on what it is now
    box.runtime.engine.wait_idle(timeout_s=30)
    operation = flip(box)
    assert operation.state == "rolled_back", operation.data.get("outcome")
    assert operation.data["outcome"]["code"] == "rolled_back_by"
    assert serving(box) == {BEFORE: 100} and tags(box) == {}


def test_roll_back_now_from_an_older_read_never_erases_what_the_flip_saved_since(
    box: Sandbox,
) -> None:
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    read_then = flip(box)
    assert read_then.state == "watching" and not read_then.data["judgements"]
    run(box, "wait 4m")  # a minute Monitoring shows: judged, saved, and the watch goes on
    judged = flip(box).data["judgements"]
    assert flip(box).state == "watching" and len(judged) >= 1
    with pytest.raises(Superseded):
        roll_back_from(box.runtime.deps, read_then, ON_CALL)
    assert flip(box).data["judgements"] == judged, "nothing was written"

    run(box, "as ana", "click Roll back now")
    operation = flip(box)
    assert operation.state == "rolled_back"
    assert operation.data["judgements"] == judged, "the flip's own save is kept"
    assert operation.data["steps"]["watch"]["status"] == "failed"
    assert serving(box) == {BEFORE: 100}


def test_an_on_call_rollback_that_finds_the_flip_just_kept_takes_the_flag_back(
    box: Sandbox,
) -> None:
    """/rollback read the lock (the flip, watching); the watch passed before it acted. "This
    flip is already done, nothing was changed" would lose the emergency: it rolls back."""
    run(box, "as marta", "/flag wa-backend NEW_CHECKOUT on")
    new = flip(box).to_revision
    seen = box.runtime.deps.store.operations.lock_holder(SERVICE)
    assert seen is not None and seen.kind == "flag" and seen.state == "watching"
    run(box, "wait 9m")
    assert flip(box).state == "succeeded" and serving(box) == {new: 100}

    deps, request = box.runtime.deps, on_call_request()
    service, emergency = authorize_request(deps, request)
    assert emergency
    operation = rollback_past(deps, request, service, emergency, seen)
    assert operation.kind == "rollback" and operation.to_revision == BEFORE
    box.runtime.engine.submit(operation.id)
    wait_until(lambda: serving(box) == {BEFORE: 100}, what="the flag taken back")
    box.runtime.engine.wait_idle(timeout_s=30)
    assert deps.store.operations.operation(operation.id).state == "succeeded"


def test_an_on_call_rollback_that_finds_a_flip_started_since_gets_past_it(box: Sandbox) -> None:
    """/rollback read no lock; a flip took the service before it recorded its rollback: the
    emergency gets past the flip rather than being told the service is busy. Its new revision
    has no traffic yet, so the flip stands aside and the rollback leaves the revision serving
    (tests/test_on_call_safety.py has the rest)."""
    deps, request = box.runtime.deps, on_call_request()
    service, emergency = authorize_request(deps, request)
    seen = deps.store.operations.lock_holder(SERVICE)
    assert seen is None
    box.emulator.cloudrun.operation_delay_s = 1.0
    run(box, "as marta")
    box.post(box.slash_body("/flag wa-backend NEW_CHECKOUT on"))
    wait_until(
        lambda: flips(box) == 1 and deps.store.operations.lock_holder(SERVICE) is not None,
        what="flip",
    )

    operation = rollback_past(deps, request, service, emergency, seen)
    assert operation.kind == "rollback" and operation.from_revision == BEFORE
    box.runtime.engine.submit(operation.id)
    wait_until(lambda: flip(box).state in FINAL_STATES, what="the flip to stand aside")
    box.runtime.engine.wait_idle(timeout_s=30)
    assert flip(box).state == "cancelled"
    assert deps.store.operations.operation(operation.id).state == "succeeded"
    assert serving(box) == {operation.to_revision: 100} and tags(box) == {}
