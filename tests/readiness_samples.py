"""Sample checklists, drills and procedures for the template tests: every mark and every
reason of every checklist item, made by the pure policy itself."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bot.ops.readiness import checklist_view
from bot.policy import readiness as r
from bot.policy.targets import TargetChoice, TargetProblem
from bot.ports import EnvVar, ProbeResult, Revision

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
OLD, NEW = NOW - timedelta(days=3), NOW - timedelta(hours=1)
REVS = [
    Revision("svc-00003", "img:3", NEW, True),
    Revision("svc-00002", "img:2", NOW - timedelta(days=1), False, "container failed"),
    Revision("svc-00001", "img:1", OLD, True),
]
CHANGE = r.LastChange("release", "svc-00003", NOW, "op1")
PROBE_OK = ProbeResult(True, 200, "ok", 12.0)
PROBE_BAD = ProbeResult(False, 500, "<!channel> boom", 30.0)
MEMBERS = {"on_call": frozenset({"U0ANA"}), "tech_lead": frozenset({"U0LUIS", "U0SOFIA"})}
EVERY_ITEM_REASON = [
    r.blue({"svc-00003": 100}, CHANGE),
    r.blue({"svc-00003": 100}, r.LastChange("rollback", "svc-00003", NOW, "op2")),
    r.blue({"svc-00003": 100}, r.LastChange("release", "svc-00002", NOW, "op1")),
    *[
        r.blue({"svc-00003": 100}, r.LastChange(kind, "svc-00003", NOW, "op3"))
        for kind in (
            "flag",
            "restore",
            "release_rolled_back",
            "flag_rolled_back",
            "restore_rolled_back",
        )
    ],
    r.blue({"svc-00003": 100}, None),
    r.blue({"svc-00003": 90, "svc-00002": 10}, CHANGE),
    r.revisions(REVS, {"svc-00003": 100}),
    r.revisions([*REVS[:2], Revision("svc-00001", "i", OLD, False)], {"svc-00003": 100}),
    r.revisions(REVS[:1], {"svc-00003": 100}),
    r.revisions(REVS[::-1][:1], {"svc-00009": 100}),
    r.revisions([REVS[0], REVS[2]], {"svc-00003": 100}),
    r.revisions(
        REVS,
        {"svc-00003": 100},
        TargetChoice(None, TargetProblem.ALL_ROLLED_BACK, rolled_back=("svc-00001",)),
        "svc",
    ),
    r.secrets((EnvVar("DB_PASSWORD", "hunter2"), EnvVar("X", secret="s", secret_version="1"))),
    r.secrets((EnvVar("DATABASE_URL", secret="db-url", secret_version="latest"),)),
    r.flags((EnvVar("FEATURE_FLAG_A", "true"),), {"A": True}),
    r.flags((EnvVar("FEATURE_FLAG_A", "on"), EnvVar("FEATURE_FLAG_B", "maybe")), {"A": False}),
    r.flags((), "HTTP 404"),
    r.backup(NOW - timedelta(hours=2), NOW, 24),
    r.backup(NOW - timedelta(hours=30), NOW, 24),
    r.backup(None, NOW, 24),
    r.backup(r.NO_DATABASE, NOW, 24),
    r.dr_runbook("https://example.com/dr", date(2026, 11, 1), NOW.date(), 90),
    r.dr_runbook("https://example.com/dr", date(2026, 1, 1), NOW.date(), 90),
    r.dr_runbook("https://example.com/dr", date(2027, 1, 1), NOW.date(), 90),
    r.dr_runbook("https://example.com/dr", None, NOW.date(), 90),
    r.dr_runbook("", None, NOW.date(), 90),
    r.acknowledged(True, MEMBERS, frozenset({"U0ANA", "U0LUIS", "U0SOFIA"})),
    r.acknowledged(True, MEMBERS, frozenset({"U0ANA", "U0LUIS"})),
    r.acknowledged(True, MEMBERS, frozenset({"U0ANA"})),
    r.acknowledged(False, MEMBERS, frozenset()),
    r.drill(r.LastDrill("svc-staging", NOW - timedelta(days=2), True, 3.4), NOW, 31),
    r.drill(r.LastDrill("svc-staging", NOW - timedelta(days=2), False, None), NOW, 31),
    r.drill(r.LastDrill("svc-staging", NOW - timedelta(days=40), True, 3.4), NOW, 31),
    r.drill(None, NOW, 31),
    r.health("/health", False, PROBE_OK),
    r.health("/healthz", False, PROBE_OK),
    r.health("/health", False, ProbeResult(False, 403, "", 5.0, problem="invoker_denied")),
    r.health("/health", False, ProbeResult(False, None, "", 5.0, problem="no_id_token")),
    r.health("/health", False, PROBE_BAD),
    r.not_gathered("backup", 4.0),
    r.unavailable("revisions", "503 from https://run.googleapis.com"),
]
CHECKLIST = checklist_view(EVERY_ITEM_REASON)
CLEAN = checklist_view([r.blue({"svc-00003": 100}, CHANGE), r.health("/health", False, PROBE_OK)])


def drill_view(state: str, **changes: Any) -> dict[str, Any]:
    log = [
        {"at": NOW.isoformat(), "step": "deploy", "ok": True, "s": 0.4, "revision": "s-drill-1"},
        {"at": NOW.isoformat(), "step": "verify", "ok": state != "failed", "s": 0.1, "status": 200},
        {"at": NOW.isoformat(), "step": "rollback", "ok": True, "s": 1.2, "to": "s-00003"},
        {"at": NOW.isoformat(), "step": "metrics", "ok": True, "s": 0.1, "status": 200},
    ]
    view = {
        "id": "op-drill",
        "service": "wa-backend-staging",
        "state": state,
        "requested_by": "U0PABLO",
        "trigger": "command",
        "revision": "wa-backend-staging-drill-20261130-090000",
        "blue": "wa-backend-staging-00003",
        "image": "us-docker.pkg.dev/p/apps/wa:v1",
        "log": log,
        "outcome": {},
        "rollback_id": "op-rb",
        "time_to_safe_s": 1.2,
        "finished": state in ("succeeded", "failed"),
        "total_s": 3.0,
    }
    return view | changes


DRILL_STATES = [
    "deploying",
    "deploy_applying",
    "verifying",
    "rolling_back",
    "waiting_rollback",
    "checking_metrics",
    "succeeded",
    "cancelled",
]
FAILURES = [
    {"code": "not_steady"},
    {"code": "deploy_failed", "detail": "503 at https://run.googleapis.com"},
    {"code": "test_unhealthy", "path": "/health", "status": 500},
    {"code": "reserved_path", "path": "/healthz"},
    {"code": "invoker_denied"},
    {"code": "no_id_token"},
    {"code": "rollback_refused", "detail": "error.busy"},
    {"code": "rollback_failed", "detail": "healthz_failed"},
    {"code": "metrics_failed", "status": 500},
    {"code": "internal"},
    {"code": "passed"},
]
RECORD = {
    "id": "d1",
    "service": "wa-backend-staging",
    "trigger": "schedule",
    "requested_by": "runback",
    "outcome": "passed",
    "started_at": NOW,
    "finished_at": NOW,
    "time_to_safe_s": 1.5,
    "operation_id": "op1",
    "code": "passed",
    "revision": "s-drill",
    "blue": "s-00003",
    "due": "",
    "log": [],
}
PROCEDURE = {
    "version": "abc123",
    "rows": [
        {"role": "on_call", "acked": ["U0ANA"], "missing": []},
        {"role": "tech_lead", "acked": [], "missing": ["U0LUIS", "U0SOFIA"]},
    ],
    "others": ["U0EVE"],
    "channel": "incidents",
    "thresholds": {
        "error_rate_rollback": 0.05,
        "error_rate_observe": 0.01,
        "p95_rollback_ms": 2000,
        "observe_minutes": 5,
    },
    "dr_url": "https://example.com/dr",
}
BLOCKED = {
    "service": "wa-backend",
    "image": "us-docker.pkg.dev/p/apps/wa:1.3.0",
    "requester": "U0MARTA",
    "value": {"blocked": 42},
    **CHECKLIST,
}

READINESS_MESSAGES = [
    pytest.param("readiness_check", {"service": "wa-backend", **CHECKLIST}, id="check-all"),
    pytest.param("readiness_check", {"service": "wa-backend", **CLEAN}, id="check-clean"),
    pytest.param("release_blocked", BLOCKED, id="release-blocked"),
    pytest.param("procedure", PROCEDURE, id="procedure"),
    pytest.param("procedure", {**PROCEDURE, "others": [], "dr_url": ""}, id="procedure-no-dr"),
    *[pytest.param("drill_card", {"drill": drill_view(s)}, id=f"drill-{s}") for s in DRILL_STATES],
    *[
        pytest.param(
            "drill_card", {"drill": drill_view("failed", outcome=o)}, id=f"drill-{o['code']}"
        )
        for o in FAILURES
    ],
    pytest.param("drill_result", {"drill": drill_view("succeeded")}, id="drill-result-passed"),
    pytest.param(
        "drill_result",
        {"drill": drill_view("failed", outcome=FAILURES[2], time_to_safe_s=None)},
        id="drill-result-failed",
    ),
    pytest.param(
        "drill_missed", {"service": "wa-backend-staging", "due": NOW, "now": NOW}, id="drill-missed"
    ),
    pytest.param(
        "drills",
        {
            "drills": [
                RECORD,
                RECORD | {"outcome": "failed", "code": "test_unhealthy", "trigger": "command"},
                RECORD | {"outcome": "missed", "time_to_safe_s": None},
                RECORD | {"outcome": "running", "time_to_safe_s": None},
            ],
            "total": 4,
            "posted": False,
        },
        id="drills",
    ),
    pytest.param("drills", {"drills": [RECORD], "total": 1, "posted": True}, id="drills-posted"),
    pytest.param("drills", {"drills": [], "total": 0, "posted": False}, id="drills-none"),
]
