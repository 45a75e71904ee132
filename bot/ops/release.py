"""Blue/green releases ("Flujo de Deployment"), as a durable state machine.

deploying -> applying -> smoke -> shifting -> applying -> judging -> ... -> awaiting_approval
(100% in production) -> shifting -> applying -> judging (validation at 100%) -> finalizing ->
applying -> succeeded. Off the happy path: rolling_back -> applying -> rolled_back; a failed
smoke test untags green -> failed; paused and needs_human wait for a person.

Every Cloud Run change is one PATCH whose operation name is committed before it is awaited
(state ``applying``, with what to expect and where to go next), so a restarted bot polls the
operation instead of applying anything twice. Timed states keep their ``due_at`` in the store: a
judgement that fell due while the bot was down is made as soon as it is back.
"""

from __future__ import annotations

import logging
import random
import re
import string
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.config import Action, ServiceConfig
from bot.ops.cards import approval_view, show
from bot.ops.context import BOT_ACTOR, Deps
from bot.ops.errors import UserError
from bot.ops.health import config_problem, health_observation, probe_health
from bot.ops.metrics_window import Window, visible_window_numbers
from bot.ops.rollback import claim_decision, request_approval
from bot.policy.approvals import decide_request
from bot.policy.gates import Judgement, Verdict, after_observation, judge
from bot.policy.targets import current_revision
from bot.ports import (
    CloudRunError,
    Message,
    ProbeResult,
    Revision,
    ServiceState,
    TrafficTarget,
)
from bot.store import Operation

log = logging.getLogger("runback.release")

GREEN_TAG = "green"
MAX_STEPS_PER_RUN = 50
RUNNING_STATES = (
    "deploying",
    "applying",
    "smoke",
    "shifting",
    "judging",
    "finalizing",
    "rolling_back",
)
PEOPLE_STATES = ("awaiting_approval", "needs_human", "paused")
FINAL_STATES = ("succeeded", "rolled_back", "failed", "cancelled")
IMAGE = re.compile(r"^[a-z0-9][a-z0-9.\-_/:@]{0,254}$")
PROMETHEUS_LINE = re.compile(r"^(# (HELP|TYPE) |[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? )", re.M)


@dataclass(frozen=True)
class ReleaseRequest:
    service: str
    image: str
    user: str
    channel: str


# -- request --------------------------------------------------------------------------------------


def request_release(deps: Deps, request: ReleaseRequest) -> Operation:
    """Validate, authorize and record a release; nothing changes in Cloud Run yet."""
    service = deps.config.service(request.service)
    if service is None:
        _refuse(deps, request, "unknown_service")
        raise UserError(
            "error.unknown_service", service=request.service, known=deps.config.service_names
        )
    if not IMAGE.fullmatch(request.image) or ".." in request.image:
        _refuse(deps, request, "bad_image")
        raise UserError("error.release.bad_image", image=request.image)
    action = Action.CANARY if service.environment == "production" else Action.DEPLOY_STAGING
    in_incidents = request.channel == deps.config.channels.incidents.id
    decision = decide_request(deps.config.approvals, action, deps.roles(request.user), in_incidents)
    if not decision.allowed:
        _refuse(deps, request, str(decision.refusal))
        raise UserError(
            f"error.refused.{decision.refusal}",
            action=str(action),
            role=str(decision.required_role),
            channel=deps.config.channels.incidents.name,
        )
    holder = deps.store.lock_holder(service.name)
    if holder is not None:
        _refuse(deps, request, "busy")
        raise UserError("error.busy", service=service.name, holder=holder)
    return _create(deps, request, service)


def _refuse(deps: Deps, request: ReleaseRequest, why: str) -> None:
    deps.audit(
        request.user,
        "release.refused",
        "refused",
        service=request.service,
        image=request.image[:300],
        why=why,
    )


def _create(deps: Deps, request: ReleaseRequest, service: ServiceConfig) -> Operation:
    ref = deps.service_ref(service)
    try:
        state, revisions = deps.cloudrun.get_service(ref), deps.cloudrun.list_revisions(ref)
    except CloudRunError as error:
        raise UserError(
            "error.cloudrun_unavailable", service=service.name, detail=error.detail or error.reason
        ) from None
    blue = current_revision(state.serving())
    if blue is None:
        raise UserError("error.target.not_serving", service=service.name, revision="", recent=[])
    green = next_revision_name(service.name, revisions)
    now = deps.clock.now()
    staging = service.environment == "staging"
    operation = deps.store.create_operation(
        now,
        kind="release",
        service=service.name,
        requested_by=request.user,
        channel=request.channel,
        reason="",
        emergency=False,
        state="deploying",
        from_revision=blue,
        to_revision=green,
        data={
            "image": request.image,
            "staging": staging,
            "uri": state.uri,
            "steps": [100] if staging else list(deps.config.release.steps),
            "step": -1,
            "history": [],
            "judgements": [],
            "blue_image": next((r.image for r in revisions if r.name == blue), ""),
            "requested_at": now.isoformat(),
        },
    )
    if not deps.store.acquire_lock(service.name, operation.id, now):
        deps.store.update_operation(operation.id, now, state="cancelled")
        raise UserError(
            "error.busy", service=service.name, holder=deps.store.lock_holder(service.name)
        )
    deps.audit(
        request.user,
        "release.requested",
        "ok",
        service=service.name,
        revision=green,
        operation_id=operation.id,
        image=request.image,
        approval="auto" if staging else "self",
    )
    deps.store.add_event(operation.id, now, "requested", actor=request.user, image=request.image)
    refresh(deps, operation.id)
    return deps.store.operation(operation.id) or operation


def next_revision_name(service: str, revisions: list[Revision]) -> str:
    """``{service}-{NNNNN}-{abc}``, one past the highest number Cloud Run has used."""
    numbers = [
        int(m.group(1))
        for r in revisions
        if (m := re.fullmatch(rf"{re.escape(service)}-(\d+)(?:-\w+)?", r.name))
    ]
    suffix = "".join(random.choices(string.ascii_lowercase, k=3))
    return f"{service}-{max(numbers, default=0) + 1:05d}-{suffix}"


# -- execution ------------------------------------------------------------------------------------


def execute(deps: Deps, operation_id: str) -> Operation:
    """Advance the release until it ends, waits for a person, or waits for its next due time."""
    operation = deps.store.operation(operation_id)
    assert operation is not None
    for _ in range(MAX_STEPS_PER_RUN):
        if operation.state not in RUNNING_STATES:
            break
        due = operation.data.get("due_at")
        if due and datetime.fromisoformat(due) > deps.clock.now():
            break
        operation = STEPS[operation.state](deps, operation)
    else:  # a bug would otherwise spin here; the next tick carries on from the store
        log.error("release %s did not settle in %d steps", operation_id, MAX_STEPS_PER_RUN)
    return operation


def _set(deps: Deps, operation: Operation, state: str | None = None, **data: Any) -> Operation:
    """Commit the next state and data together, then show it."""
    now = deps.clock.now()
    merged = {**operation.data, **data}
    fields: dict[str, Any] = {"data": merged}
    if state is not None:
        fields["state"] = state
        if state in FINAL_STATES:
            fields["finished_at"] = now
    updated = deps.store.update_operation(operation.id, now, **fields)
    refresh(deps, operation.id)
    return updated


def _due_in(deps: Deps, seconds: float) -> str:
    return (deps.clock.now() + timedelta(seconds=seconds)).isoformat()


def _patch(
    deps: Deps,
    operation: Operation,
    targets: list[TrafficTarget],
    then: str,
    purpose: str,
    deploy: bool = False,
) -> Operation:
    """Send one traffic (or deploy) PATCH and commit its operation name before waiting."""
    ref = deps.service_ref(deps.managed_service(operation.service))
    try:
        state = deps.cloudrun.get_service(ref)
        targets = _keeping_other_tags(targets, state)
        if deploy:
            name = deps.cloudrun.start_deploy(
                ref, operation.data["image"], operation.to_revision, targets, state.etag
            )
        else:
            name = deps.cloudrun.start_traffic_update(ref, targets, state.etag)
    except CloudRunError as error:
        return _cloud_failure(deps, operation, purpose, error)
    expected = {t.revision: t.percent for t in targets if t.percent}
    deps.audit(
        BOT_ACTOR,
        f"cloudrun.{purpose}",
        "ok",
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        cloud_operation=name,
        traffic=expected,
    )
    return _set(
        deps,
        operation,
        "applying",
        due_at=None,
        pending={"op": name, "then": then, "purpose": purpose, "expect": expected},
    )


def _keeping_other_tags(targets: list[TrafficTarget], state: ServiceState) -> list[TrafficTarget]:
    """``targets`` plus every other tag of the service at 0% on its revision: a PATCH's
    traffic replaces the whole list, and a tag left out would be deleted."""
    named = {t.tag for t in targets if t.tag} | {GREEN_TAG}
    kept = {s.tag: s.revision for s in state.traffic if s.tag and s.tag not in named}
    return [*targets, *(TrafficTarget(rev, 0, tag) for tag, rev in sorted(kept.items()))]


def _step_applying(deps: Deps, operation: Operation) -> Operation:
    pending = operation.data["pending"]
    try:
        state = deps.cloudrun.wait_operation(pending["op"], deps.config.release.operation_timeout_s)
    except CloudRunError as error:
        return _cloud_failure(deps, operation, pending["purpose"], error)
    if state.serving() != pending["expect"]:
        return _cloud_failure(
            deps,
            operation,
            pending["purpose"],
            CloudRunError("traffic_mismatch", str(state.serving())),
        )
    operation = _set(deps, operation, pending=None, expected=state.serving())
    return AFTER_APPLY[pending["then"]](deps, operation, state)


def _cloud_failure(
    deps: Deps, operation: Operation, purpose: str, error: CloudRunError
) -> Operation:
    """A Cloud Run change failed: get to safety if green may have traffic, and say so."""
    detail = error.detail or error.reason
    deps.audit(
        BOT_ACTOR,
        f"cloudrun.{purpose}",
        "failed",
        service=operation.service,
        operation_id=operation.id,
        detail=detail,
    )
    if purpose in ("shift", "finalize") and operation.state != "rolling_back":
        return _set(
            deps,
            operation,
            "rolling_back",
            due_at=None,
            outcome={"code": f"{purpose}_failed", "detail": detail},
        )
    return _end(deps, operation, "failed", {"code": f"{purpose}_failed", "detail": detail})


# -- 1. deploy green at 0% ------------------------------------------------------------------------


def _step_deploy(deps: Deps, operation: Operation) -> Operation:
    ref = deps.service_ref(deps.managed_service(operation.service))
    try:
        state = deps.cloudrun.get_service(ref)
    except CloudRunError as error:
        return _cloud_failure(deps, operation, "deploy", error)
    targets = _as_it_is_without_green(state)
    targets.append(TrafficTarget(operation.to_revision, 0, GREEN_TAG))
    return _patch(deps, operation, targets, then="deployed", purpose="deploy", deploy=True)


def _as_it_is_without_green(state: ServiceState) -> list[TrafficTarget]:
    """Every serving target pinned by revision name, every other tag kept at 0%."""
    targets = [TrafficTarget(r, p) for r, p in sorted(state.serving().items())]
    targets += [
        TrafficTarget(s.revision, 0, s.tag)
        for s in state.traffic
        if s.tag and s.tag != GREEN_TAG and not s.percent
    ]
    return targets


def _after_deploy(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    tag = next((s for s in state.traffic if s.tag == GREEN_TAG), None)
    if tag is None or not tag.uri:
        return _untag(deps, operation, {"code": "no_tag_url"})
    _event(deps, operation, "deployed", revision=operation.to_revision, uri=tag.uri)
    return _set(deps, operation, "smoke", green_uri=tag.uri, service_uri=state.uri)


# -- 2. smoke tests on the green tag URL -------------------------------------------------------


def _step_smoke(deps: Deps, operation: Operation) -> Operation:
    if operation.data.get("stop_requested"):
        return _untag(deps, operation, operation.data.get("outcome") or {"code": "stopped"})
    uri = operation.data["green_uri"].rstrip("/")
    service = deps.managed_service(operation.service)
    timeout = deps.config.rollback.health_check_timeout_s
    for _ in range(deps.config.release.smoke_checks):
        _, result = _probe_green(deps, operation)
        if config_problem(result):  # a configuration error: green is not known to be bad
            return _untag(deps, operation, {"code": result.problem, "check": service.health_path})
        if not result.ok:
            return _smoke_failed(deps, operation, service.health_path, result.status, result.detail)
    metrics = deps.probe.get(uri + "/metrics", timeout, audience=_audience(deps, operation))
    if not metrics.ok or not PROMETHEUS_LINE.search(metrics.detail):
        return _smoke_failed(deps, operation, "/metrics", metrics.status, metrics.detail)
    _event(deps, operation, "smoke_passed")
    return _next_step(deps, operation)


def _smoke_failed(
    deps: Deps, operation: Operation, check: str, status: int | None, seen: str
) -> Operation:
    """Green stays at 0% and loses its tag: no user ever saw it."""
    _event(deps, operation, "smoke_failed", check=check, status=status)
    outcome = {"code": "smoke_failed", "check": check, "status": status, "seen": seen[:200]}
    return _untag(deps, operation, outcome)


def _untag(deps: Deps, operation: Operation, outcome: dict[str, Any]) -> Operation:
    """Remove green's tag, leaving every other target as it is, then end as failed."""
    operation = _set(deps, operation, outcome=outcome)
    try:
        state = deps.cloudrun.get_service(deps.service_ref(deps.managed_service(operation.service)))
    except CloudRunError as error:
        return _cloud_failure(deps, operation, "untag", error)
    return _patch(deps, operation, _as_it_is_without_green(state), then="untagged", purpose="untag")


def _after_untag(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    return _end(deps, operation, "failed", operation.data.get("outcome") or {})


# -- 3. canary steps, judged by the decision table ---------------------------------------------


def _next_step(deps: Deps, operation: Operation) -> Operation:
    index = operation.data["step"] + 1
    percent = operation.data["steps"][index]
    needs_approval = percent == 100 and not operation.data["staging"]
    if needs_approval and not operation.data.get("full_traffic_approved"):
        return _ask_for_full_traffic(deps, operation, index)
    return _set(deps, operation, "shifting", step=index, due_at=None)


def _step_shift(deps: Deps, operation: Operation) -> Operation:
    paused = _moved_out_of_band(deps, operation)
    if paused is not None:
        return paused
    percent = operation.data["steps"][operation.data["step"]]
    blue, green = operation.from_revision, operation.to_revision
    targets = [TrafficTarget(green, percent, GREEN_TAG)]
    if percent < 100:
        targets.insert(0, TrafficTarget(blue, 100 - percent))
    return _patch(deps, operation, targets, then="shifted", purpose="shift")


def _after_shift(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    percent = operation.data["steps"][operation.data["step"]]
    now = deps.clock.now()
    history = [*operation.data["history"], {"at": now.isoformat(), "percent": percent}]
    _event(deps, operation, "traffic_shifted", percent=percent)
    if operation.data["staging"]:
        return _set(deps, operation, "finalizing", history=history)
    release = deps.config.release
    return _set(
        deps,
        operation,
        "judging",
        history=history,
        step_started=now.isoformat(),
        observing_since=None,
        due_at=_due_in(deps, release.warmup_s + release.judge_interval_s),
    )


def _step_judge(deps: Deps, operation: Operation) -> Operation:
    paused = _moved_out_of_band(deps, operation)
    if paused is not None:
        return paused
    judgement, window = _judge_green_in_window(deps, operation)
    verdict = _verdict(deps, operation, judgement)
    operation = _record_judgement(deps, operation, judgement, verdict, window)
    if verdict is Verdict.ROLLBACK:
        return _set(
            deps,
            operation,
            "rolling_back",
            due_at=None,
            outcome={"code": "judged_bad", "reasons": [str(r) for r in judgement.reasons]},
        )
    if verdict is Verdict.PROCEED:
        return _proceed(deps, operation)
    if verdict is Verdict.INCONCLUSIVE and _inconclusive_too_long(deps, operation):
        return _set(deps, operation, "needs_human", due_at=None)
    return _set(deps, operation, due_at=_due_in(deps, deps.config.release.judge_interval_s))


def _judge_green(deps: Deps, operation: Operation) -> Judgement:
    return _judge_green_in_window(deps, operation)[0]


def _judge_green_in_window(deps: Deps, operation: Operation) -> tuple[Judgement, Window | None]:
    """The decision table on green, and the window of Monitoring data it was judged on."""
    window = None
    service = deps.managed_service(operation.service)
    ref = deps.service_ref(service)
    start = datetime.fromisoformat(operation.data["step_started"]) + timedelta(
        seconds=deps.config.release.warmup_s
    )
    try:
        lookback = timedelta(minutes=deps.config.thresholds.window_minutes)
        observing = operation.data.get("observing_since")
        if observing:  # "still above?" is asked of the minutes since observing began
            start = max(start, datetime.fromisoformat(observing))
        numbers, window = visible_window_numbers(
            deps, ref, operation.to_revision, lookback=lookback, not_before=start
        )
    except Exception as error:  # Monitoring faults are never a pass
        log.warning("Monitoring unreadable for %s: %s", operation.to_revision, error)
        numbers = (None, None, None)
    _, probe = _probe_green(deps, operation)
    return judge(deps.config.thresholds, health_observation(probe, *numbers)), window


def _probe_green(deps: Deps, operation: Operation) -> tuple[str, ProbeResult]:
    """Green's health path on its tag URL (a run.app URL: no custom domain reaches a tag)."""
    service = deps.managed_service(operation.service)
    green_uri = operation.data["green_uri"]
    return probe_health(
        deps,
        service,
        green_uri,
        service_url=operation.data.get("service_uri") or green_uri,
        custom_domain=False,
    )


def _audience(deps: Deps, operation: Operation) -> str | None:
    if not deps.managed_service(operation.service).requires_auth:
        return None
    return (operation.data.get("service_uri") or operation.data["green_uri"]).rstrip("/")


def _verdict(deps: Deps, operation: Operation, judgement: Judgement) -> Verdict:
    """The decision table, with the observation window kept across judgements."""
    if judgement.verdict is not Verdict.OBSERVE and not operation.data.get("observing_since"):
        return judgement.verdict
    since = operation.data.get("observing_since") or deps.clock.now().isoformat()
    verdict = after_observation(
        deps.config.thresholds, judgement, datetime.fromisoformat(since), deps.clock.now()
    )
    if judgement.verdict is Verdict.INCONCLUSIVE and verdict is Verdict.OBSERVE:
        return Verdict.OBSERVE
    return verdict


def _record_judgement(
    deps: Deps,
    operation: Operation,
    judgement: Judgement,
    verdict: Verdict,
    window: Window | None = None,
) -> Operation:
    seen = judgement.observation
    now = deps.clock.now()
    percent = operation.data["steps"][operation.data["step"]]
    start, end = window or (now, now)  # the minutes Monitoring showed (none yet: empty)
    numbers = {
        "at": now.isoformat(),
        "percent": percent,
        "verdict": str(verdict),
        "reasons": [str(r) for r in judgement.reasons],
        "requests": seen.requests,
        "errors": seen.errors,
        "error_rate": seen.error_rate,
        "p95_ms": seen.p95_ms,
        "healthz_ok": seen.healthz_ok,
        "window_start": start.isoformat(),
        "window_s": max((end - start).total_seconds(), 0.0),
    }
    observing = operation.data.get("observing_since")
    if verdict is Verdict.OBSERVE and not observing:
        observing = now.isoformat()
    elif verdict is not Verdict.OBSERVE:
        observing = None
    inconclusive = operation.data.get("inconclusive_since")
    if judgement.verdict is Verdict.INCONCLUSIVE:
        inconclusive = inconclusive or now.isoformat()
    else:
        inconclusive = None
    judgements = [*operation.data["judgements"], numbers][-200:]
    deps.audit(
        BOT_ACTOR,
        "release.judged",
        str(verdict),
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        **numbers,
    )
    _post_in_thread(
        deps,
        operation,
        deps.renderer.message(
            "release_judgement",
            j=numbers,
            thresholds=deps.config.thresholds.model_dump(),
            revision=operation.to_revision,
        ),
    )
    return _set(
        deps,
        operation,
        judgements=judgements,
        observing_since=observing,
        inconclusive_since=inconclusive,
    )


def _inconclusive_too_long(deps: Deps, operation: Operation) -> bool:
    since = operation.data.get("inconclusive_since")
    if not since:
        return False
    waited = (deps.clock.now() - datetime.fromisoformat(since)).total_seconds()
    return waited >= deps.config.release.inconclusive_limit_s


def _proceed(deps: Deps, operation: Operation) -> Operation:
    percent = operation.data["steps"][operation.data["step"]]
    if percent < 100:
        return _next_step(deps, operation)
    started = datetime.fromisoformat(operation.data["step_started"])
    validated = (deps.clock.now() - started).total_seconds() >= (
        deps.config.release.warmup_s + deps.config.release.validation_s
    )
    if validated:
        return _set(deps, operation, "finalizing", due_at=None)
    return _set(deps, operation, due_at=_due_in(deps, deps.config.release.judge_interval_s))


def _moved_out_of_band(deps: Deps, operation: Operation) -> Operation | None:
    """Someone changed the traffic in the console: stop and say so rather than fight them.
    Returns the paused operation, or None when the traffic is as Runback left it."""
    expected = operation.data.get("expected")
    if not expected:
        return None
    try:
        state = deps.cloudrun.get_service(deps.service_ref(deps.managed_service(operation.service)))
    except CloudRunError:
        return None  # judged again at the next tick
    if state.serving() == expected:
        return None
    _event(deps, operation, "out_of_band", serving=state.serving(), expected=expected)
    return _set(
        deps,
        operation,
        "paused",
        paused_from=operation.state,
        due_at=None,
        pause_reason="out_of_band",
        seen=state.serving(),
    )


# -- 4. 100% needs a tech lead -----------------------------------------------------------------


def _ask_for_full_traffic(deps: Deps, operation: Operation, index: int) -> Operation:
    request_approval(deps, operation.id, Action.FULL_TRAFFIC, operation.requested_by)
    return _set(deps, operation, "awaiting_approval", step=index - 1, next_step=index, due_at=None)


def decide_full_traffic(deps: Deps, approval_id: str, user: str, approve: bool) -> Operation:
    operation = claim_decision(deps, approval_id, user, approve)
    if not approve:
        return _set(deps, operation, "rolling_back", outcome={"code": "rejected", "by": user})
    return _set(
        deps,
        operation,
        "shifting",
        step=operation.data["next_step"],
        full_traffic_approved=True,
        approved_by=user,
        due_at=None,
    )


def on_expired(deps: Deps, operation: Operation) -> None:
    deps.audit(
        BOT_ACTOR,
        "release.expired",
        "expired",
        service=operation.service,
        operation_id=operation.id,
    )
    _set(deps, operation, "rolling_back", outcome={"code": "approval_expired"})


# -- 5. green becomes blue, or back to blue ------------------------------------------------------


def fail_unexpectedly(deps: Deps, operation_id: str) -> None:
    """A bug must not leave green with traffic nobody watches: go back to blue, loudly."""
    operation = deps.store.operation(operation_id)
    if operation is None or operation.state in FINAL_STATES:
        return
    if operation.state == "rolling_back":
        _end(deps, operation, "failed", {"code": "internal"})
    else:
        _set(deps, operation, "rolling_back", due_at=None, outcome={"code": "internal"})


def _step_finalize(deps: Deps, operation: Operation) -> Operation:
    targets = [TrafficTarget(operation.to_revision, 100)]
    return _patch(deps, operation, targets, then="finalized", purpose="finalize")


def _after_finalize(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    now = deps.clock.now()
    deps.store.record_serving(
        operation.service,
        operation.from_revision,
        "served",
        now - timedelta(microseconds=1),
        operation.id,
    )
    deps.store.record_serving(operation.service, operation.to_revision, "served", now, operation.id)
    return _end(deps, operation, "succeeded", {"code": "released"})


def _step_roll_back(deps: Deps, operation: Operation) -> Operation:
    targets = [TrafficTarget(operation.from_revision, 100)]
    return _patch(deps, operation, targets, then="rolled_back", purpose="rollback")


def _after_roll_back(deps: Deps, operation: Operation, state: ServiceState) -> Operation:
    deps.store.record_serving(
        operation.service, operation.to_revision, "rolled_back_from", deps.clock.now(), operation.id
    )
    history = [
        *operation.data["history"],
        {"at": deps.clock.now().isoformat(), "percent": 0, "event": "rollback"},
    ]
    operation = _set(deps, operation, history=history)
    return _end(deps, operation, "rolled_back", operation.data.get("outcome") or {})


def _end(deps: Deps, operation: Operation, state: str, outcome: dict[str, Any]) -> Operation:
    operation = _set(deps, operation, state, outcome=outcome, due_at=None)
    deps.store.release_lock(operation.service, operation.id)
    deps.audit(
        BOT_ACTOR,
        f"release.{state}",
        "ok" if state == "succeeded" else state,
        service=operation.service,
        revision=operation.to_revision,
        operation_id=operation.id,
        **{k: v for k, v in outcome.items() if k != "seen"},
    )
    _event(deps, operation, state, **outcome)
    if state == "failed":  # a card update notifies nobody: say it again, as a new message
        message = deps.renderer.message("release_card", rel=release_view(deps, operation))
        try:
            deps.chat.post(operation.channel, message)
        except Exception:
            log.exception("could not announce the failure of release %s", operation.id)
    _post_chart(deps, operation)
    return operation


# -- people: buttons and /rollback ---------------------------------------------------------------


def roll_back(deps: Deps, operation_id: str, user: str) -> Operation:
    """The card's Roll back (or an on-call engineer's /rollback): 100% to blue at once."""
    operation = _live(deps, operation_id)
    deps.audit(
        user,
        "release.rollback_requested",
        "ok",
        service=operation.service,
        operation_id=operation.id,
    )
    if operation.state in ("deploying", "smoke") or (
        operation.state == "applying" and operation.data["pending"]["purpose"] == "deploy"
    ):
        return _set(deps, operation, outcome={"code": "stopped", "by": user}, stop_requested=True)
    return _set(
        deps, operation, "rolling_back", due_at=None, outcome={"code": "rolled_back_by", "by": user}
    )


def pause(deps: Deps, operation_id: str, user: str) -> Operation:
    operation = _live(deps, operation_id)
    if operation.state not in ("judging", "shifting", "needs_human"):
        raise UserError("notice.release.cannot_pause", state=operation.state)
    deps.audit(user, "release.paused", "ok", service=operation.service, operation_id=operation.id)
    return _set(
        deps,
        operation,
        "paused",
        paused_from=operation.state,
        due_at=None,
        pause_reason="by",
        paused_by=user,
    )


def resume(deps: Deps, operation_id: str, user: str) -> Operation:
    operation = _live(deps, operation_id)
    if operation.state not in ("paused", "needs_human"):
        raise UserError("notice.release.not_paused", state=operation.state)
    deps.audit(user, "release.resumed", "ok", service=operation.service, operation_id=operation.id)
    if operation.state == "needs_human":  # a person judged the inconclusive step: proceed
        operation = _set(deps, operation, inconclusive_since=None, proceeded_by=user)
        return _proceed_now(deps, operation)
    back_to = operation.data.get("paused_from") or "judging"
    if operation.data.get("pause_reason") == "out_of_band":
        back_to = "judging"
    expected = operation.data.get("expected")
    if operation.data.get("pause_reason") == "out_of_band":
        expected = operation.data.get("seen")  # accept the traffic as the person left it
    return _set(
        deps,
        operation,
        back_to,
        paused_from=None,
        pause_reason=None,
        expected=expected,
        due_at=_due_in(deps, deps.config.release.judge_interval_s),
    )


def _proceed_now(deps: Deps, operation: Operation) -> Operation:
    percent = operation.data["steps"][operation.data["step"]]
    if percent < 100:
        return _next_step(deps, operation)
    return _set(deps, operation, "finalizing", due_at=None)


def _live(deps: Deps, operation_id: str) -> Operation:
    operation = deps.store.operation(operation_id)
    if operation is None or operation.kind != "release":
        raise UserError("notice.unknown_request")
    if operation.state in FINAL_STATES or operation.state == "rolling_back":
        raise UserError("notice.release.over", state=operation.state)
    return operation


# -- messages -------------------------------------------------------------------------------------


def release_view(deps: Deps, operation: Operation) -> dict[str, Any]:
    data = operation.data or {}
    approval = deps.store.approval_for(operation.id)
    step = data.get("step", -1)
    steps = data.get("steps", [])
    return {
        "id": operation.id,
        "service": operation.service,
        "state": operation.state,
        "requested_by": operation.requested_by,
        "image": data.get("image", ""),
        "blue": operation.from_revision,
        "blue_image": data.get("blue_image", ""),
        "green": operation.to_revision,
        "staging": data.get("staging", False),
        "steps": steps,
        "step": step,
        "percent": steps[step] if 0 <= step < len(steps) else 0,
        "last": (data.get("judgements") or [None])[-1],
        "outcome": data.get("outcome") or {},
        "pause_reason": data.get("pause_reason"),
        "paused_by": data.get("paused_by", ""),
        "seen": data.get("seen") or {},
        "due_at": datetime.fromisoformat(data["due_at"]) if data.get("due_at") else None,
        "approval": approval_view(approval) if approval else None,
        "thresholds": deps.config.thresholds.model_dump(),
        "window_minutes": deps.config.thresholds.observe_minutes,
        "buttons": _buttons(operation),
    }


def _buttons(operation: Operation) -> list[str]:
    state = operation.state
    if state in FINAL_STATES or state == "rolling_back":
        return []
    buttons = []
    if state == "awaiting_approval":
        buttons.append("approve_full")
    if state == "needs_human":
        buttons.append("proceed")
    if state in ("judging", "shifting"):
        buttons.append("pause")
    if state == "paused":
        buttons.append("resume")
    return [*buttons, "roll_back"]


def refresh(deps: Deps, operation_id: str) -> None:
    operation = deps.store.operation(operation_id)
    if operation is None:
        return
    message = deps.renderer.message("release_card", rel=release_view(deps, operation))
    posted = show(deps, operation.channel, operation.message_ts, message, operation_id)
    if posted:
        deps.store.update_operation(operation.id, deps.clock.now(), message_ts=posted)


def _post_in_thread(deps: Deps, operation: Operation, message: Message) -> None:
    current = deps.store.operation(operation.id)
    try:
        deps.chat.post(
            operation.channel, message, thread_ts=(current.message_ts if current else "") or None
        )
    except Exception:
        log.exception("could not post in the thread of release %s", operation.id)


def _event(deps: Deps, operation: Operation, kind: str, **data: Any) -> None:
    deps.store.add_event(operation.id, deps.clock.now(), kind, actor=BOT_ACTOR, **data)


def _post_chart(deps: Deps, operation: Operation) -> None:
    """The release's error rate and P95 over time, with thresholds and steps, in its thread."""
    data = operation.data or {}
    if not data.get("judgements"):
        return
    try:
        from bot.ops.release_chart import render_release_chart

        points = [{**j, "at": datetime.fromisoformat(j["at"])} for j in data["judgements"]]
        steps = [{**h, "at": datetime.fromisoformat(h["at"])} for h in data["history"]]
        labels = {
            key: deps.renderer.text(f"release.chart.{key}")
            for key in ("error_rate", "p95", "traffic", "rollback", "time", "no_data")
        }
        title = deps.renderer.text(
            "release.chart.title", service=operation.service, revision=operation.to_revision
        )
        png = render_release_chart(
            points, steps, deps.config.thresholds.model_dump(), title, labels
        )
        current = deps.store.operation(operation.id)
        deps.chat.upload(
            operation.channel,
            (current.message_ts if current else "") or None,
            f"release-{operation.service}-{operation.id}.png",
            png,
            title,
            deps.renderer.text("release.chart.comment"),
        )
    except Exception:
        log.exception("could not post the chart of release %s", operation.id)


STEPS = {
    "deploying": _step_deploy,
    "applying": _step_applying,
    "smoke": _step_smoke,
    "shifting": _step_shift,
    "judging": _step_judge,
    "finalizing": _step_finalize,
    "rolling_back": _step_roll_back,
}
AFTER_APPLY = {
    "deployed": _after_deploy,
    "untagged": _after_untag,
    "shifted": _after_shift,
    "finalized": _after_finalize,
    "rolled_back": _after_roll_back,
}
