"""Every message of templates/, in every locale: complete, valid Block Kit, within Slack's
limits, and safe with hostile user text. Pure and fast: no network, no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.config import Role, load_config
from bot.ops.rollback.view import step_marks
from bot.policy.approvals import allowed_actions
from bot.ports import Message
from bot.render import LOCALES, TEMPLATES_DIR, Renderer
from bot.sandbox.emulator.slack_api import check_blocks, check_view
from bot.store import LockHolder
from tests.flag_template_cases import FLAG_EPHEMERAL_CASES, FLAG_MESSAGES, make_flag
from tests.readiness_samples import READINESS_MESSAGES
from tests.templates_cloudsql import DB_EPHEMERAL_CASES, DB_MESSAGES

NOW = datetime(2025, 11, 27, 14, 0, tzinfo=UTC)
CONFIG = load_config(Path(__file__).resolve().parents[1] / "app.yaml")
FINAL = ("succeeded", "failed", "rejected", "expired", "cancelled")

HOSTILE = (
    '<!channel> <!here> <https://evil.example|click me> <@U0LUIS> & "quotes" back\\slash\nnew line'
)
HUGE = HOSTILE + " " + "x" * 10_000
RAW_MARKUP = ("<!channel>", "<!here>", "<https://evil", "<@U0LUIS>")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("en")


def catalog_keys(prefix: str) -> list[str]:
    return sorted(k for k in Renderer().catalogs["en"] if k.startswith(prefix))


FAILURE_CODES = [
    k.removeprefix("failure.")
    for k in catalog_keys("failure.")
    if k not in ("failure.alert", "failure.next_steps")
]
ERROR_DETAIL: dict[str, dict[str, Any]] = {
    "conflict": {"detail": "etag mismatch"},
    "patch_failed": {"detail": "403 PERMISSION_DENIED"},
    "operation_failed": {"detail": "revision failed to start"},
    "traffic_mismatch": {"serving": {"wa-backend-00003": 100}},
    "change_failed": {"detail": "REVISION_FAILED: Revision 'wa-backend-00004-abc' is not ready"},
    "healthz_failed": {
        "url": "https://wa-backend.a.run.app/healthz",
        "checks": [
            {"status": 503, "ok": False, "detail": ""},
            {"status": None, "ok": False, "detail": "timeout"},
        ],
    },
}


def revision(name: str, age_s: float | None = 3600.0, image: str = "gcr.io/p/wa:1") -> dict:
    return {"revision": name, "image": image, "age_s": age_s, "ready": True, "percent": 0}


def make_op(state: str, **over: Any) -> dict[str, Any]:
    """The ``op`` of bot/ops/rollback/view.py card_view, as the workflow leaves it in ``state``."""
    status = {
        "rejected": "rejected",
        "expired": "expired",
        "cancelled": "cancelled",
        "awaiting_approval": "pending",
    }.get(state, "approved")
    timings = {
        "succeeded": {"shift": 0.8, "wait": 12.0, "verify": 3.1},
        "failed": {"shift": 0.8},
        "verifying": {"shift": 0.8, "wait": 12.0},
        "shifting": {"shift": 0.8},
    }.get(state, {})
    op: dict[str, Any] = {
        "id": "op-7f3a",
        "kind": "rollback",
        "service": "wa-backend",
        "state": state,
        "emergency": False,
        "automatic": False,
        "requested_by": "U0SOFIA",
        "reason": "checkout errors",
        "from": revision("wa-backend-00003", 600.0),
        "to": revision("wa-backend-00002"),
        "timings": timings,
        "error": None,
        "traffic_now": None,
        "uri": "",
        "health": None,
        "superseded_by": "",
        "preempted_by": "",
        "preempted_reason": "",
        "skipped": [],
        "offers": {},
        "total_s": 16.0 if state in FINAL else None,
        "approval": {
            "id": "ap-1",
            "status": status,
            "decided_by": "U0ANA",
            "decided_at": NOW,
            "expires_at": NOW + timedelta(minutes=30),
            "action": "scheduled_rollback",
        },
        "health_path": "/healthz",
        "approver": {"role": "tech_lead", "not_the_requester": True},
        "migration_guard": [],
    }
    op["marks"] = step_marks(timings, None)
    if state == "failed":
        op["traffic_now"] = {"wa-backend-00003": 90, "wa-backend-00002": 10}
    op.update(over)
    return op


def failed_op(code: str, **over: Any) -> dict[str, Any]:
    return make_op("failed", **{"error": {"code": code, **ERROR_DETAIL.get(code, {})}, **over})


CARD_CASES = [
    pytest.param(make_op("awaiting_approval"), id="awaiting_approval"),
    pytest.param(make_op("approved"), id="approved"),
    pytest.param(make_op("approved", emergency=True, approval=None, reason=""), id="emergency"),
    pytest.param(
        make_op("succeeded", emergency=True, automatic=True, requested_by="runback", approval=None),
        id="automatic",
    ),
    pytest.param(make_op("shifting"), id="shifting"),
    pytest.param(make_op("verifying"), id="verifying"),
    pytest.param(make_op("succeeded"), id="succeeded"),
    pytest.param(
        make_op(
            "succeeded",
            emergency=True,
            approval=None,
            total_s=None,
            **{"from": revision("", None, "")},
        ),
        id="succeeded-nothing-serving",
    ),
    *[pytest.param(failed_op(code), id=f"failed-{code}") for code in FAILURE_CODES],
    pytest.param(
        make_op(
            "succeeded",
            automatic=True,
            skipped=[{"revision": "wa-backend-00002", "why": "Container failed to start"}],
        ),
        id="succeeded-skipped-not-ready",
    ),
    pytest.param(
        failed_op("healthz_failed", traffic_now={"wa-backend-00002": 100}), id="failed-traffic-read"
    ),
    pytest.param(make_op("rejected"), id="rejected"),
    pytest.param(make_op("expired"), id="expired"),
    pytest.param(make_op("cancelled"), id="cancelled"),
    pytest.param(make_op("cancelled", superseded_by="op-9c1d"), id="cancelled-superseded"),
    pytest.param(
        make_op("cancelled", preempted_by="U0ANA", preempted_reason="<!channel> checkout down"),
        id="cancelled-preempted",
    ),
]

HOLDER = LockHolder(
    operation_id="op-7f3a",
    kind="rollback",
    state="shifting",
    requested_by="U0SOFIA",
    to_revision="wa-backend-00002",
)
RECENT = [
    {**revision("wa-backend-00003", 600.0), "percent": 100},
    {**revision("wa-backend-00002", 86_400.0), "ready": False},
    revision("wa-backend-00001", 400_000.0),
]
TARGET = {"service": "wa-backend", "revision": "wa-backend-00002", "recent": RECENT}

# (key, context) for the ephemeral layout; every error.* and notice.* key must appear here.
EPHEMERAL_CASES: list[tuple[str, dict[str, Any]]] = [
    ("error.heading", {}),
    ("error.usage.rollback", {}),
    ("error.usage.traffic", {}),
    ("error.usage.ops", {"sub": "deploy"}),
    (
        "error.usage.unknown_command",
        {"command": "/rollbak", "suggestion": "/rollback", "known": ["/rollback", "/ops"]},
    ),
    ("error.usage.unknown_command", {"command": "/x", "suggestion": "", "known": ["/ops"]}),
    ("error.unknown_service", {"service": "wa-frontend", "known": CONFIG.service_names}),
    (
        "error.refused.role_required",
        {"action": "scheduled_rollback", "role": "tech_lead", "channel": "incidents"},
    ),
    (
        "error.refused.role_required",
        {"action": "emergency_rollback", "role": "on_call", "channel": "incidents"},
    ),
    (
        "error.refused.incidents_channel_only",
        {"action": "emergency_rollback", "role": "on_call", "channel": "incidents"},
    ),
    ("error.approval.role_required", {"role": "tech_lead"}),
    ("error.approval.own_request", {"role": "tech_lead", "kind": "rollback"}),
    ("error.approval.own_request", {"role": "tech_lead", "kind": "release"}),
    ("error.busy", {"service": "wa-backend", "holder": HOLDER}),
    ("error.busy", {"service": "wa-backend", "holder": None}),
    ("error.cloudrun_unavailable", {"service": "wa-backend", "detail": "503 UNAVAILABLE"}),
    ("error.target.unknown_revision", {**TARGET, "revision": "wa-backend-00042"}),
    ("error.target.unknown_revision", {**TARGET, "recent": []}),
    ("error.target.not_ready", TARGET),
    ("error.target.already_serving", {**TARGET, "revision": "wa-backend-00003"}),
    ("error.target.no_previous", {**TARGET, "revision": ""}),
    ("error.target.not_serving", {**TARGET, "revision": ""}),
    (
        "error.target.unknown_revision",
        {**TARGET, "revision": "wa-backnd-00002", "suggestions": ["wa-backend-00002"]},
    ),
    ("error.target.unknown_revision", {**TARGET, "revision": "500", "digits": True}),
    (
        "error.target.ambiguous_revision",
        {
            **TARGET,
            "revision": "00004",
            "suggestions": ["wa-backend-00004-abc", "wa-backend-00004"],
        },
    ),
    (
        "error.target.other_service",
        {**TARGET, "revision": "wa-backend-staging-00001", "owner": "wa-backend-staging"},
    ),
    (
        "error.target.not_ready",
        {**TARGET, "why": "Container failed to start", "alternative": "wa-backend-00001"},
    ),
    ("error.target.all_rolled_back", {**TARGET, "rolled_back": ["wa-backend-00002"]}),
    (
        "error.target.all_rolled_back",
        {**TARGET, "rolled_back": ["wa-backend-00002"], "suggestion": "wa-backend-00002"},
    ),
    ("notice.repeat_not_yours", {"user": "U0ANA"}),
    (
        "notice.repeat_stale",
        {
            "service": "wa-backend",
            "revision": "wa-backend-00001",
            "now_pick": "wa-backend-00002",
            "latest": {
                "id": "op-1",
                "state": "succeeded",
                "requested_by": "U0ANA",
                "automatic": False,
                "finished_at": NOW,
                "from_revision": "wa-backend-00001",
                "to_revision": "wa-backend-00003",
            },
        },
    ),
    (
        "notice.repeat_stale",
        {"service": "wa-backend", "revision": "wa-backend-00001", "now_pick": "", "latest": None},
    ),
    ("notice.recovery_stale", {"service": "wa-backend", "holder": HOLDER, "latest": None}),
    (
        "notice.recovery_stale",
        {
            "service": "wa-backend",
            "holder": None,
            "latest": {
                "requested_by": "U0ANA",
                "to_revision": "wa-backend-00001",
                "state": "failed",
            },
        },
    ),
    ("error.internal", {"ref": "a1b2c3d4"}),
    ("notice.already_decided", {"status": "approved", "by": "U0ANA", "at": NOW}),
    ("notice.already_decided", {"status": "rejected", "by": "U0ANA", "at": NOW}),
    ("notice.already_decided", {"status": "cancelled", "by": "", "at": None}),
    ("notice.already_decided", {"status": "expired", "by": "", "at": NOW}),
    ("notice.already_decided", {"status": "expired", "by": "", "at": None}),
    ("notice.already_decided", {"status": "pending", "by": "", "at": None}),
    ("notice.unknown_request", {}),
    ("notice.card_not_posted.not_in_channel", {"channel": "C0RANDOM"}),
    ("notice.card_not_posted.channel_not_found", {"channel": "C0SECRET"}),
    ("notice.card_not_posted.is_archived", {"channel": "C0OLD"}),
    (
        "error.refused.role_required",
        {
            "action": "emergency_rollback",
            "role": "on_call",
            "channel": "incidents",
            "groups_problem": "paid_teams_only",
            "groups": ("oncall",),
        },
    ),
    ("notice.wrong_button", {}),
    ("notice.incident_not_open", {"state": "mitigated"}),
    ("notice.incident_not_open", {"state": "?"}),
    ("error.incident.responder_only", {}),
    ("error.incident.emergency_needs_on_call", {"channel": "incidents"}),
    ("error.usage.deploy", {}),
    ("error.release.bad_image", {"image": "not an image"}),
    ("error.release.roles", {}),
    (
        "error.release.registry",
        {
            "image": "docker.io/evil/wa:1",
            "service": "wa-backend",
            "allowed": ["us-central1-docker.pkg.dev/p/", "us-docker.pkg.dev/p/"],
        },
    ),
    (
        "notice.release.warned",
        {"service": "wa-backend", "ws": ["latest", "already_serving"], "blue": "wa-backend-3"},
    ),
    ("notice.release.cannot_pause", {"state": "awaiting_approval"}),
    ("notice.release.not_paused", {"state": "judging"}),
    ("notice.release.over", {"state": "rolled_back"}),
    (
        "error.busy",
        {
            "service": "wa-backend",
            "holder": LockHolder("op-r", "release", "judging", "U0MARTA", "wa-backend-4"),
        },
    ),
    *DB_EPHEMERAL_CASES,
]

JUDGEMENT = {
    "at": NOW.isoformat(),
    "percent": 10,
    "verdict": "proceed",
    "reasons": ["healthy"],
    "requests": 240,
    "errors": 0,
    "error_rate": 0.0,
    "p95_ms": 123.0,
    "healthz_ok": True,
    "window_start": NOW.isoformat(),
    "window_s": 120.0,
}


def make_rel(state: str, **over: Any) -> dict[str, Any]:
    """The ``rel`` of bot/ops/release/view.py release_view."""
    rel: dict[str, Any] = {
        "id": "op-r1",
        "service": "wa-backend",
        "state": state,
        "requested_by": "U0MARTA",
        "image": "us-docker.pkg.dev/p/apps/wa-backend:1.3.0",
        "blue": "wa-backend-00003",
        "blue_image": "us-docker.pkg.dev/p/apps/wa-backend:1.2.0",
        "green": "wa-backend-00004-abc",
        "staging": False,
        "steps": [10, 50, 100],
        "step": 1,
        "percent": 50,
        "last": JUDGEMENT,
        "outcome": {},
        "pause_reason": None,
        "paused_by": "",
        "seen": {},
        "due_at": NOW,
        "approval": None,
        "thresholds": CONFIG.thresholds.model_dump(),
        "window_minutes": 5.0,
        "buttons": ["pause", "roll_back"],
        "warnings": [],
        "confirmed": False,
        "approver": {"role": "tech_lead", "not_the_requester": True},
        "awaiting": "",
        "approval_action": "full_traffic",
        "migration": None,
        "backup": None,
    }
    return {**rel, **over}


OUTCOMES = {
    "judged_bad": {"reasons": ["error_rate_high", "p95_high"]},
    "rejected": {"by": "U0LUIS"},
    "approval_expired": {},
    "rolled_back_by": {"by": "U0ANA", "reason": "checkout <!channel> down"},
    "stopped": {"by": "U0ANA"},
    "internal": {},
    "released": {},
    "smoke_failed": {"check": "/healthz", "status": 500, "seen": "<html>down</html>"},
    "no_tag_url": {},
    **{
        code: {"detail": "503 UNAVAILABLE"}
        for code in (
            "deploy_failed",
            "untag_failed",
            "shift_failed",
            "finalize_failed",
            "rollback_failed",
        )
    },
}
RELEASE_CASES = [
    *[
        pytest.param(make_rel(state), id=f"release-{state}")
        for state in (
            "deploying",
            "applying",
            "smoke",
            "shifting",
            "judging",
            "finalizing",
            "rolling_back",
            "cancelled",
        )
    ],
    pytest.param(make_rel("deploying", step=-1, percent=0, last=None), id="release-start"),
    pytest.param(
        make_rel(
            "awaiting_approval",
            buttons=["approve_full", "reject", "roll_back"],
            approval={"id": "ap-9", "status": "pending", "decided_by": "", "expires_at": NOW},
        ),
        id="release-awaiting",
    ),
    pytest.param(
        make_rel(
            "judging",
            warnings=["latest", "untagged", "already_serving"],
            confirmed=True,
            approver={"role": "senior_developer", "not_the_requester": False},
        ),
        id="release-warnings",
    ),
    pytest.param(
        make_rel(
            "needs_human",
            buttons=["proceed", "roll_back"],
            last={
                **JUDGEMENT,
                "verdict": "inconclusive",
                "requests": 3,
                "reasons": ["too_few_requests"],
            },
        ),
        id="release-needs-human",
    ),
    pytest.param(
        make_rel("paused", pause_reason="by", paused_by="U0MARTA", buttons=["resume", "roll_back"]),
        id="release-paused",
    ),
    pytest.param(
        make_rel(
            "paused",
            pause_reason="out_of_band",
            buttons=["resume", "roll_back"],
            seen={"wa-backend-00003": 100},
        ),
        id="release-out-of-band",
    ),
    pytest.param(make_rel("succeeded", step=2, percent=100, buttons=[]), id="release-done"),
    pytest.param(
        make_rel("judging", staging=True, steps=[100], step=0, last=None), id="release-staging"
    ),
    pytest.param(
        make_rel(
            "judging",
            last={
                **JUDGEMENT,
                "requests": None,
                "errors": None,
                "error_rate": None,
                "p95_ms": None,
                "healthz_ok": False,
                "verdict": "rollback",
                "reasons": ["healthz_failed", "no_data"],
            },
        ),
        id="release-no-data",
    ),
    *[
        pytest.param(
            make_rel(state, outcome={"code": code, **extra}, buttons=[]),
            id=f"release-{state}-{code}",
        )
        for code, extra in OUTCOMES.items()
        for state in ("rolled_back", "failed")
    ],
]


def make_inc(**over: Any) -> dict[str, Any]:
    """An incident view as bot/ops/incidents/view.py incident_view builds it."""
    inc: dict[str, Any] = {
        "id": "inc-1a2b",
        "service": "wa-backend",
        "managed": True,
        "environment": "production",
        "state": "open",
        "verdict": "rollback",
        "revision": "wa-backend-00003",
        "alert": {
            "policy_name": "wa-backend error rate > 1%",
            "condition_name": "5xx ratio",
            "metric_type": "run.googleapis.com/request_count",
            "metric_name": "Request Count",
            "observed_value": "0.071",
            "threshold_value": "0.01",
            "url": "https://console.cloud.google.com/monitoring/alerting/incidents/0.abc",
            "summary": "Error rate for wa-backend is above the threshold.",
            "documentation": "",
        },
        "started_at": NOW,
        "received_at": NOW,
        "mitigated_at": None,
        "resolved_at": None,
        "observe_until": None,
        "minutes_left": None,
        "last": {
            "revision": "wa-backend-00003",
            "verdict": "rollback",
            "reasons": ["error_rate_high", "p95_high"],
            "requests": 1234,
            "errors": 88,
            "error_rate": 0.0713,
            "p95_ms": 2450.0,
            "healthz_ok": True,
            "window_minutes": 5.0,
        },
        "auto_rollback": True,
        "acknowledged_by": [],
        "operation": None,
        "thresholds": CONFIG.thresholds.model_dump(),
        "action": "rollback_auto",
        "buttons": ["roll_back", "observe", "acknowledge"],
        "blocked": "other",
        "measured": "error_rate",
        "ratio": True,
        "resolved_by": "",
        "resolved_how": "",
        "blocked_facts": {},
    }
    return {**inc, **over}


RUNNING_OP = {
    "id": "op-9",
    "kind": "rollback",
    "state": "shifting",
    "to_revision": "wa-backend-00002",
    "requested_by": "runback",
    "automatic": True,
    "finished_at": None,
    "succeeded": False,
}
DONE_OP = {**RUNNING_OP, "state": "succeeded", "finished_at": NOW, "succeeded": True}
INCIDENT_CASES = [
    pytest.param(make_inc(verdict="", last=None, action="judging"), id="judging"),
    pytest.param(make_inc(), id="rollback-auto"),
    pytest.param(
        make_inc(
            operation=RUNNING_OP,
            action="rollback_running",
            buttons=["acknowledge"],
            acknowledged_by=["U0ANA", "U0LUIS"],
        ),
        id="rollback-running-acked",
    ),
    pytest.param(make_inc(action="rollback_manual", auto_rollback=False), id="rollback-manual"),
    pytest.param(
        make_inc(
            action="rollback_pending",
            operation={**RUNNING_OP, "state": "awaiting_approval", "requested_by": "U0LUIS"},
        ),
        id="rollback-pending",
    ),
    pytest.param(make_inc(measured="latency", ratio=False), id="latency-alert"),
    pytest.param(
        make_inc(measured="other", ratio=False, alert={**make_inc()["alert"], "metric_type": ""}),
        id="other-alert",
    ),
    *[
        pytest.param(make_inc(action="rollback_blocked", blocked=b), id=f"blocked-{b}")
        for b in (
            "error.busy",
            "error.cloudrun_unavailable",
            "error.target.no_previous",
            "error.target.not_serving",
            "error.target.not_ready",
            "other",
        )
    ],
    pytest.param(
        make_inc(
            action="rollback_blocked",
            blocked="error.target.all_rolled_back",
            blocked_facts={"rolled_back": ["wa-backend-00001"], "suggestion": "wa-backend-00001"},
        ),
        id="blocked-all-rolled-back",
    ),
    pytest.param(
        make_inc(
            verdict="observe",
            action="observe",
            observe_until=NOW,
            buttons=["roll_back", "acknowledge"],
            last={
                **make_inc()["last"],
                "verdict": "observe",
                "reasons": ["error_rate_elevated", "p95_elevated"],
            },
        ),
        id="observe",
    ),
    pytest.param(
        make_inc(
            verdict="proceed",
            action="proceed",
            last={**make_inc()["last"], "verdict": "proceed", "reasons": ["healthy"]},
        ),
        id="recovered",
    ),
    pytest.param(
        make_inc(
            verdict="inconclusive",
            action="inconclusive",
            last={
                **make_inc()["last"],
                "verdict": "inconclusive",
                "requests": None,
                "errors": None,
                "error_rate": None,
                "p95_ms": None,
                "healthz_ok": False,
                "reasons": ["no_data"],
            },
        ),
        id="inconclusive-no-data",
    ),
    pytest.param(
        make_inc(
            verdict="inconclusive",
            action="inconclusive",
            last={
                **make_inc()["last"],
                "verdict": "inconclusive",
                "requests": 3,
                "reasons": ["too_few_requests"],
            },
        ),
        id="inconclusive-few",
    ),
    pytest.param(
        make_inc(
            state="mitigated",
            action="mitigated",
            mitigated_at=NOW,
            operation=DONE_OP,
            buttons=["resolve"],
        ),
        id="mitigated",
    ),
    pytest.param(
        make_inc(
            state="resolved",
            action="resolved",
            resolved_at=NOW,
            buttons=[],
            operation={**DONE_OP, "automatic": False, "requested_by": "U0ANA"},
            resolved_by="U0LUIS",
            resolved_how="resolved",
        ),
        id="resolved-by-person",
    ),
    pytest.param(
        make_inc(
            state="resolved",
            action="resolved",
            resolved_at=NOW,
            buttons=[],
            resolved_by="cloud-monitoring",
            resolved_how="alert_closed",
        ),
        id="resolved-by-alert",
    ),
    pytest.param(
        make_inc(
            managed=False,
            service="billing-api",
            environment="unknown",
            action="unmanaged",
            buttons=[],
            last=None,
            verdict="",
        ),
        id="unmanaged",
    ),
    pytest.param(
        make_inc(
            alert={
                **make_inc()["alert"],
                "url": "",
                "summary": "",
                "metric_type": "run.googleapis.com/request_latencies",
            }
        ),
        id="latency-no-url",
    ),
    pytest.param(
        make_inc(
            alert={**make_inc()["alert"], "metric_type": "custom/x", "policy_name": ""},
            environment="staging",
        ),
        id="other-staging",
    ),
]

LINES = [
    {"revision": "wa-backend-00003", "percent": 90, "tags": [], "latest": True},
    {"revision": "wa-backend-00002", "percent": 10, "tags": ["green", "canary"], "latest": False},
    {"revision": "wa-backend-00001", "percent": 0, "tags": ["blue"], "latest": False},
]
TRAFFIC_BASE = {"service": "wa-backend", "uri": "https://wa-backend.a.run.app"}


def whoami_context(held: set[Role], in_incidents: bool, user: str = "U0SOFIA") -> dict:
    """As bot/slack/commands.py whoami_message builds it, from the real approval matrix."""
    decisions = allowed_actions(CONFIG.approvals, held, in_incidents)
    rows = [
        (
            str(a),
            {"verdict": str(d.verdict), "role": str(d.required_role), "why": str(d.refusal or "")},
        )
        for a, d in decisions.items()
    ]
    return {
        "user": user,
        "roles": sorted(str(r) for r in held),
        "decisions": rows,
        "channel": CONFIG.channels.incidents.name,
    }


OFFERS = {"previous": "wa-backend-00003", "next": "wa-backend-00001"}
REPEAT_PREVIOUS = {
    "id": "op-7f3a",
    "state": "succeeded",
    "requested_by": "U0ANA",
    "automatic": False,
    "finished_at": NOW,
    "from_revision": "wa-backend-00003",
    "to_revision": "wa-backend-00002",
}
REPEAT_AUTOMATIC = {**REPEAT_PREVIOUS, "automatic": True, "requested_by": "runback"}
REPEAT = {
    "service": "wa-backend",
    "user": "U0ANA",
    "reason": HOSTILE,
    "previous": REPEAT_PREVIOUS,
    "target": revision("wa-backend-00001", 400_000.0),
    "window_minutes": 15.0,
    "value": '{"service": "wa-backend"}',
}

LEAD = {Role.TECH_LEAD, Role.SENIOR_DEVELOPER, Role.DEVELOPER}
MIGRATIONS = [
    ("migration-additive", "ALTER TABLE t ADD c int; CREATE INDEX i ON t (c);", "postgres"),
    ("migration-destructive", "ALTER TABLE t DROP COLUMN `<!here>`;", "mysql"),
    ("migration-unknown", "SELEC 1; ALTER TABLE t ALTER c TYPE text;", "postgres"),
    ("migration-empty", "-- nothing", "postgres"),
    (
        "migration-long",
        "".join(
            f"ALTER TABLE t{i} ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id);"
            for i in range(40)
        ),
        "postgres",
    ),
]


def migration_report_context(sql: str, dialect: str) -> dict[str, Any]:
    from bot.policy.migrations import check_migration, worst

    findings = check_migration(sql, dialect)  # type: ignore[arg-type]
    rows = [
        {
            "line": f.line,
            "statement": f.statement,
            "verdict": str(f.verdict),
            "rule": f.rule,
            "data": dict(f.data),
            "warnings": list(f.warnings),
        }
        for f in findings
    ]
    verdict = str(worst(f.verdict for f in findings))
    return {
        "verdict": verdict,
        "dialect": dialect,
        "findings": rows,
        "shown": rows[:20],
        "hidden": max(len(rows) - 20, 0),
    }


# -- migrel: releases and rollbacks that know their migrations ----------------------------------

DROP = {
    "line": 3,
    "statement": "ALTER TABLE reservas DROP COLUMN fecha",
    "verdict": "destructive",
    "rule": "drop_column",
    "data": {"table": "reservas", "column": "fecha"},
    "warnings": [],
}
ADD = {
    **DROP,
    "line": 1,
    "verdict": "additive",
    "rule": "add_column_nullable",
    "data": {"table": "reservas", "column": "notes"},
}
MIGRATION = {
    "verdict": "destructive",
    "statements": [ADD, DROP],
    "shown": [ADD, DROP],
    "hidden": 0,
    "dialect": "postgres",
    "source": "ci",
    "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "registered_by": "ci",
    "flag": "FEATURE_FLAG_NEW_SCHEMA",
    "candidate": 1,
    "approved_by": "",
}
PENDING = {"id": "ap-9", "status": "pending", "decided_by": "", "expires_at": NOW}
GUARD = [
    {
        "revision": "wa-backend-00003",
        "verdict": "destructive",
        "flag": "FEATURE_FLAG_NEW_SCHEMA",
        "statements": [DROP],
    },
    {
        "revision": "wa-backend-00002",
        "verdict": "unknown",
        "flag": "",
        "statements": [
            {**DROP, "verdict": "unknown", "rule": "unrecognised", "data": {"kind": "DoStmt"}}
        ],
    },
]
RELEASE_CASES += [
    pytest.param(
        make_rel(
            "awaiting_approval",
            step=-1,
            percent=0,
            last=None,
            awaiting="migration",
            approval_action="destructive_migration",
            migration=MIGRATION,
            backup={"status": "succeeded", "backup_id": "1700000000004", "instance": "wa-db"},
            approval=PENDING,
            buttons=["approve_migration", "reject", "roll_back"],
        ),
        id="release-awaiting-migration",
    ),
    pytest.param(
        make_rel(
            "backing_up",
            step=-1,
            percent=0,
            last=None,
            migration=MIGRATION,
            backup={
                "status": "running",
                "backup_id": "1700000000004",
                "instance": "wa-db",
                "cloudsql": "RUNNING",
            },
            buttons=["roll_back"],
        ),
        id="release-backing-up",
    ),
    pytest.param(
        make_rel(
            "failed",
            step=-1,
            percent=0,
            last=None,
            migration=MIGRATION,
            backup={"status": "failed", "backup_id": "1700000000004", "instance": "wa-db"},
            outcome={"code": "backup_failed", "detail": "backup run failed"},
            buttons=[],
        ),
        id="release-backup-failed",
    ),
    pytest.param(
        make_rel("judging", migration=MIGRATION, backup={"status": "no_database"}),
        id="release-no-database-to-back-up",
    ),
    pytest.param(
        make_rel(
            "judging",
            migration={
                **MIGRATION,
                "approved_by": "U0LUIS",
                "source": "slack",
                "registered_by": "U0MARTA",
                "hidden": 40,
            },
        ),
        id="release-migration-approved",
    ),
    pytest.param(
        make_rel(
            "judging",
            migration={
                **MIGRATION,
                "verdict": "additive",
                "statements": [ADD],
                "shown": [ADD],
                "flag": "",
            },
        ),
        id="release-migration-additive",
    ),
    pytest.param(
        make_rel(
            "rolled_back",
            buttons=[],
            migration=MIGRATION,
            outcome={"code": "migration_rejected", "by": "U0LUIS"},
        ),
        id="release-migration-rejected",
    ),
    pytest.param(
        make_rel("rolled_back", buttons=[], outcome={"code": "migration_approval_expired"}),
        id="release-migration-expired",
    ),
]
GUARDED_APPROVAL = {**make_op("awaiting_approval")["approval"], "action": "rollback_past_migration"}
CARD_CASES += [
    pytest.param(
        make_op(
            "awaiting_approval",
            migration_guard=GUARD,
            approval=GUARDED_APPROVAL,
            requested_by="U0ANA",
        ),
        id="guarded",
    ),
    pytest.param(
        make_op(
            "awaiting_approval",
            migration_guard=GUARD[1:],
            approval=GUARDED_APPROVAL,
            automatic=True,
            requested_by="runback",
            approver={"role": "tech_lead", "not_the_requester": False},
        ),
        id="guarded-automatic-no-flag",
    ),
    pytest.param(make_op("succeeded", migration_guard=GUARD), id="guarded-done"),
]
INCIDENT_CASES += [
    pytest.param(
        make_inc(
            operation={
                "id": "op-7f3a",
                "kind": "rollback",
                "state": "awaiting_approval",
                "to_revision": "wa-backend-00002",
                "requested_by": "runback",
                "automatic": True,
                "finished_at": None,
                "succeeded": False,
                "migration_guard": GUARD,
            },
            action="rollback_migration_guard",
            buttons=["observe", "acknowledge"],
        ),
        id="rollback-migration-guard",
    ),
    pytest.param(
        make_inc(
            operation={
                "id": "op-7f3a",
                "kind": "rollback",
                "state": "rejected",
                "to_revision": "wa-backend-00002",
                "requested_by": "runback",
                "automatic": True,
                "finished_at": NOW,
                "succeeded": False,
                "migration_guard": GUARD,
            },
            action="rollback_migration_declined",
            buttons=["roll_back", "observe", "acknowledge"],
        ),
        id="rollback-migration-declined",
    ),
]
EPHEMERAL_CASES += [
    (
        "error.release.flag_missing",
        {
            "service": "wa-backend",
            "image": "us-docker.pkg.dev/p/a/wa:1.3.0",
            "flag": "",
            "verdict": "destructive",
            "source": "ci",
            "commit": "9fceb02",
        },
    ),
    (
        "error.release.flag_missing",
        {
            "service": "wa-backend",
            "image": "us-docker.pkg.dev/p/a/wa:1.3.0",
            "flag": "",
            "verdict": "unknown",
            "source": "slack",
            "commit": "",
        },
    ),
    ("error.release.flag_invalid", {"flag": "feature_flag_lower"}),
    (
        "error.release.flag_without_migration",
        {"service": "wa-backend", "image": "us-docker.pkg.dev/p/a/wa:1.3.0"},
    ),
]

EPHEMERAL_CASES += FLAG_EPHEMERAL_CASES  # the flags' own cases (tests/flag_template_cases.py)

MESSAGES: list[Any] = [
    *[pytest.param("rollback_card", {"op": op.values[0]}, id=f"card-{op.id}") for op in CARD_CASES],
    *[
        pytest.param("rollback_failed", {"op": failed_op(code)}, id=f"failed-{code}")
        for code in FAILURE_CODES
    ],
    *[
        pytest.param("ephemeral", {"key": key, **ctx}, id=f"{key}-{i}")
        for i, (key, ctx) in enumerate(EPHEMERAL_CASES)
    ],
    pytest.param(
        "rollback_failed",
        {"op": failed_op("healthz_failed", offers=OFFERS)},
        id="failed-healthz-offers",
    ),
    pytest.param(
        "rollback_failed",
        {"op": failed_op("healthz_failed", offers={"previous": "", "next": ""})},
        id="failed-healthz-nothing-to-offer",
    ),
    pytest.param("rollback_repeat", REPEAT, id="repeat"),
    pytest.param("rollback_repeat", {**REPEAT, "previous": REPEAT_AUTOMATIC}, id="repeat-auto"),
    pytest.param(
        "traffic",
        {**TRAFFIC_BASE, "lines": LINES, "reconciling": False, "holder": None},
        id="traffic-idle",
    ),
    pytest.param(
        "traffic",
        {**TRAFFIC_BASE, "lines": LINES[:2], "reconciling": True, "holder": HOLDER},
        id="traffic-busy-reconciling",
    ),
    pytest.param(
        "traffic",
        {**TRAFFIC_BASE, "lines": [], "uri": "", "reconciling": False, "holder": None},
        id="traffic-none",
    ),
    *[
        pytest.param("incident", {"inc": case.values[0]}, id=f"incident-{case.id}")
        for case in INCIDENT_CASES
    ],
    pytest.param(
        "incidents", {"incidents": [make_inc(), make_inc(state="mitigated")]}, id="incidents"
    ),
    pytest.param("incidents", {"incidents": []}, id="incidents-none"),
    *[pytest.param("release_card", {"rel": case.values[0]}, id=case.id) for case in RELEASE_CASES],
    pytest.param(
        "release_judgement",
        {
            "j": JUDGEMENT,
            "revision": "wa-backend-00004-abc",
            "thresholds": CONFIG.thresholds.model_dump(),
        },
        id="release-judgement",
    ),
    pytest.param(
        "deploy_confirm",
        {"service": "wa-backend", "image": "us-docker.pkg.dev/p/a/wa:latest", "ws": ["latest"]},
        id="deploy-confirm",
    ),
    pytest.param("help", {"channel": "incidents"}, id="help"),
    pytest.param("whoami", whoami_context(set(), False, "U0NOBODY"), id="whoami-nobody"),
    pytest.param("whoami", whoami_context({Role.ON_CALL}, True), id="whoami-oncall-incidents"),
    pytest.param("whoami", whoami_context({Role.ON_CALL}, False), id="whoami-oncall-elsewhere"),
    pytest.param("whoami", whoami_context(LEAD | {Role.ON_CALL}, True), id="whoami-lead"),
    *[
        pytest.param("migration_report", migration_report_context(sql, dialect), id=case)
        for case, sql, dialect in MIGRATIONS
    ],
    pytest.param(
        "whoami",
        {**whoami_context(set(), True), "groups_problem": "other", "groups": ("oncall",)},
        id="whoami-groups-unreadable",
    ),
    *DB_MESSAGES,
    *READINESS_MESSAGES,
]
MESSAGES += FLAG_MESSAGES
VIEWS = {
    "migration_modal": {"metadata": json.dumps({"channel": "C0INCIDENTS"})},
    "deploy_migration_modal": {
        "metadata": json.dumps(
            {"channel": "C0INCIDENTS", "service": "wa-backend", "image": "us-docker.pkg.dev/a:1"}
        ),
        "service": "wa-backend",
        "image": "us-docker.pkg.dev/p/a/wa:1.3.0",
        "flag": "FEATURE_FLAG_NEW_SCHEMA",
    },
}


def texts(node: Any) -> list[str]:
    """Every text of a text object (mrkdwn / plain_text) anywhere in the blocks."""
    if isinstance(node, list):
        return [t for item in node for t in texts(item)]
    if not isinstance(node, dict):
        return []
    found = [node["text"]] if node.get("type") in ("mrkdwn", "plain_text") else []
    return found + [t for value in node.values() for t in texts(value)]


def assert_valid(message: Message) -> str:
    """Valid for slack_sdk, for the emulator's stricter checker, and within Slack's limits.
    Returns the whole message as JSON, for content checks."""
    payload = json.dumps({"text": message.text, "blocks": message.blocks}, ensure_ascii=False)
    assert json.loads(payload)["blocks"] == message.blocks
    for block in Block.parse_all(message.blocks):
        block.to_dict()  # slack_sdk validates every nested object while serializing
    assert check_blocks(message.blocks) == []
    assert message.text.strip() and len(message.text) <= 3000
    assert 0 < len(message.blocks) <= 50
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "context":
            assert len(block["elements"]) <= 10
    assert all(t.strip() for t in texts(message.blocks)), "empty text object"
    assert "{{" not in payload and "{%" not in payload, "unrendered Jinja"
    return payload


def test_locales_have_the_same_keys_and_no_empty_text(renderer: Renderer) -> None:
    en, es = renderer.catalogs["en"], renderer.catalogs["es"]
    assert sorted(en) == sorted(es)
    for locale, catalog in renderer.catalogs.items():
        assert not [k for k, v in catalog.items() if not v.strip()], locale


def test_every_error_and_notice_key_has_a_case() -> None:
    covered = {key for key, _ in EPHEMERAL_CASES}
    assert set(catalog_keys("error.")) | set(catalog_keys("notice.")) == covered


def test_every_layout_is_rendered() -> None:
    layouts = {p.name.removesuffix(".json.j2") for p in (TEMPLATES_DIR / "blocks").glob("*.j2")}
    assert layouts == {case.values[0] for case in MESSAGES} | set(VIEWS)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", sorted(VIEWS))
def test_view_is_a_valid_modal(renderer: Renderer, locale: str, name: str) -> None:
    view = renderer.view(name, locale, **VIEWS[name])
    assert check_view(view) == []
    assert len(view["title"]["text"]) <= 24 and len(view["private_metadata"]) <= 3000


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("name", "context"), MESSAGES)
def test_message_is_valid_block_kit(
    renderer: Renderer, locale: str, name: str, context: dict[str, Any]
) -> None:
    assert_valid(renderer.message(name, locale, **context))


HOSTILE_MESSAGES = [
    pytest.param("rollback_card", {"op": make_op("awaiting_approval", reason=HUGE)}, id="card"),
    pytest.param(
        "rollback_card",
        {
            "op": failed_op(
                "patch_failed", reason=HUGE, error={"code": "patch_failed", "detail": HOSTILE}
            )
        },
        id="card-failed",
    ),
    pytest.param(
        "rollback_failed",
        {"op": failed_op("operation_failed", error={"code": "operation_failed", "detail": HUGE})},
        id="failed-alert",
    ),
    *[
        pytest.param("ephemeral", {**ctx, "key": key, field: HUGE}, id=f"{key}-{field}")
        for key, ctx, field in [
            ("error.usage.ops", {}, "sub"),
            ("error.usage.unknown_command", {"known": ["/ops"], "suggestion": ""}, "command"),
            ("error.unknown_service", {"known": ["wa-backend"]}, "service"),
            ("error.cloudrun_unavailable", {"service": "wa-backend"}, "detail"),
            ("error.target.unknown_revision", TARGET, "revision"),
            ("error.target.not_ready", TARGET, "revision"),
            ("error.target.already_serving", TARGET, "service"),
            ("error.target.no_previous", TARGET, "service"),
            ("error.busy", {"holder": None}, "service"),
        ]
    ],
    pytest.param(
        "incident",
        {
            "inc": make_inc(
                service=HUGE,
                alert={
                    **make_inc()["alert"],
                    "summary": HUGE,
                    "policy_name": HUGE,
                    "metric_name": HUGE,
                    "observed_value": HOSTILE,
                    "threshold_value": HOSTILE,
                },
            )
        },
        id="incident",
    ),
    pytest.param(
        "traffic",
        {
            **TRAFFIC_BASE,
            "service": HUGE,
            "holder": None,
            "reconciling": False,
            "lines": [{**LINES[0], "revision": HOSTILE, "tags": [HOSTILE]}],
        },
        id="traffic",
    ),
]


HOSTILE_MESSAGES += [
    pytest.param("flag_card", {"f": make_flag("watching", reason=HUGE), "alert": True}, id="flag")
]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(("name", "context"), HOSTILE_MESSAGES)
def test_hostile_user_text_is_shown_never_executed(
    renderer: Renderer, locale: str, name: str, context: dict[str, Any]
) -> None:
    message = renderer.message(name, locale, **context)
    payload = assert_valid(message)
    assert "&lt;!channel&gt;" in payload
    # shown escaped, or hidden where it is a fault's detail (no addresses there)
    assert "&lt;https://evil.example|click me&gt;" in payload or "&lt;… me&gt;" in payload
    for raw in RAW_MARKUP:
        assert raw not in payload
    if name != "traffic":
        assert "…" in payload, "a 10,000-char text must be clipped"


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("state", ["approved", "succeeded", "failed"])
def test_hostile_names_on_the_card_are_escaped(renderer: Renderer, locale: str, state: str) -> None:
    """Names come from app.yaml and Cloud Run (validated), but the card must not trust them."""
    target = {**revision("wa-backend-00002"), "revision": HOSTILE, "image": HOSTILE}
    op = failed_op("traffic_mismatch") if state == "failed" else make_op(state)
    op.update(service=HOSTILE, to=target, reason=HOSTILE, traffic_now={HOSTILE: 100})
    for name in ("rollback_card", "rollback_failed") if state == "failed" else ("rollback_card",):
        payload = assert_valid(renderer.message(name, locale, op=op))
        assert "&lt;!channel&gt;" in payload
        assert not [raw for raw in RAW_MARKUP if raw in payload]


@pytest.mark.parametrize(
    ("key", "context"),
    [
        ("state.awaiting_approval", {}),
        ("card.approve", {}),
        ("error.heading", {}),
        ("traffic.idle", {}),
        ("help.fallback", {}),
        ("error.usage.traffic", {}),
        ("card.status.expired", {}),
        ("failure.internal", {}),
        ("whoami.roles", {"user": "U0SOFIA", "roles": []}),
    ],
)
def test_spanish_is_translated(renderer: Renderer, key: str, context: dict[str, Any]) -> None:
    english = renderer.text(key, "en", **context)
    spanish = renderer.text(key, "es", **context)
    assert spanish and spanish != english


def test_spanish_is_the_default_when_asked(renderer: Renderer) -> None:
    es = Renderer("es")
    assert es.message("help", channel="incidents") == renderer.message(
        "help", "es", channel="incidents"
    )
    assert "tráfico" in es.message("help", channel="incidents").blocks[1]["text"]["text"]


def test_unknown_locale_is_refused() -> None:
    with pytest.raises(ValueError, match="fr"):
        Renderer("fr")
