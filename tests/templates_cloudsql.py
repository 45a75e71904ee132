"""Rendering cases of the backup and restore messages, spliced into tests/test_templates.py's
lists (so its completeness checks cover them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.ops.restore.view import STEP_NAMES
from bot.store import LockHolder

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
APPROVAL = {
    "id": "ap1",
    "status": "pending",
    "decided_by": "",
    "decided_at": None,
    "expires_at": AT,
    "action": "restore",
}
APPROVER = {"role": "tech_lead", "not_the_requester": True}
COPIED = {
    "edition": "ENTERPRISE",
    "tier": "db-custom-2-7680",
    "network": "default",
    "public_ip": False,
    "ssl_mode": "ENCRYPTED_ONLY",
    "flags": ["max_connections", "log_min_duration_statement"],
    "availability": "REGIONAL",
    "disk": "PD_SSD 100",
    "backups": True,
    "backups_at": "03:00",
    "deletion_protection": True,
}
YIELDED = {"by": "U0ANA", "at": AT.isoformat(), "state": "creating", "reason": "bad deploy"}
RESTORE_HOLDER = LockHolder(
    operation_id="op-9",
    kind="restore",
    state="restoring",
    requested_by="U0LUIS",
    to_revision="",
)

DB_EPHEMERAL_CASES: list[tuple[str, dict[str, Any]]] = [
    ("error.usage.backup", {}),
    ("error.usage.backups", {}),
    ("error.usage.restore", {}),
    ("error.db.unknown", {"target": "nope", "known": ["wa-backend", "wa-backend-db"]}),
    ("error.db.unknown", {"target": "nope", "known": []}),
    ("error.db.none", {"service": "wa-backend"}),
    ("error.db.no_adapter", {}),
    ("error.db.backup_running", {"instance": "wa-backend-db"}),
    ("error.db.bad_backup_id", {"backup_id": "abc"}),
    (
        "error.db.no_such_backup",
        {"backup_id": "9", "instance": "wa-backend-db", "status": "FAILED", "recent": ["1", "2"]},
    ),
    (
        "error.db.not_from_secret",
        {
            "service": "wa-backend",
            "revision": "wa-backend-00003",
            "env": "DATABASE_URL",
            "plain": True,
        },
    ),
    (
        "error.db.cloudsql_unavailable",
        {"instance": "wa-backend-db", "reason": "permission_denied", "detail": "403"},
    ),
    (
        "error.db.cloudsql_unavailable",
        {"instance": "wa-backend-db", "reason": "unavailable", "detail": "503 at 10.0.0.1"},
    ),
    ("error.db.go_back_roles", {}),
    ("error.busy", {"service": "wa-backend", "holder": RESTORE_HOLDER}),
    ("error.refused.role_required", {"action": "restore", "role": "tech_lead", "channel": "i"}),
]


def backup_card(state: str, **changes: Any) -> dict[str, Any]:
    return {
        "id": "op-1",
        "service": "wa-backend",
        "instance": "wa-backend-db",
        "state": state,
        "requested_by": "U0MARTA",
        "description": "Pre-deployment: orders <!channel>",
        "backup_id": "1796",
        "op_status": "RUNNING",
        "unreachable": "",
        "elapsed_s": 75.0,
        "error": "",
        "approval": None,
        "approver": {"role": "senior_developer", "not_the_requester": False},
        **changes,
    }


def restore_card(state: str, done: int, **changes: Any) -> dict[str, Any]:
    steps = [
        {
            "name": name,
            "status": "done" if i < done else ("running" if i == done else "pending"),
            "s": 12.0 if i <= done else None,
            "note": "",
        }
        for i, name in enumerate(STEP_NAMES)
    ]
    return {
        "id": "op-2",
        "service": "wa-backend",
        "state": state,
        "requested_by": "U0LUIS",
        "instance": "wa-backend-db",
        "clone": "wa-backend-db-r20261130-0900",
        "backup": {"id": "1796", "at": AT.isoformat(), "automated": True, "description": ""},
        "env": "DATABASE_URL",
        "secret": "wa-backend-database-url",
        "secret_version": "1",
        "new_secret": False,
        "new_var": {"secret": "wa-backend-database-url", "version": "2" if done > 3 else ""},
        "old_revision": "wa-backend-00003",
        "new_revision": "wa-backend-00004-abc" if done > 4 else "",
        "steps": steps,
        "sql_status": "RUNNING",
        "instance_state": "PENDING_CREATE",
        "unreachable": "",
        "last": None,
        "verified": None,
        "outcome": {},
        "going_back_failed": "",
        "yielded": {},
        "waiting_for": {},
        "rebuilt": {},
        "copied": COPIED,
        "approval": None,
        "approver": APPROVER,
        "can_go_back": state in ("judging", "succeeded"),
        "thresholds": {},
        **changes,
    }


PREVIEW = {
    "service": "wa-backend",
    "instance": "wa-backend-db",
    "backup": {"id": "1796", "automated": False, "at": AT, "description": "Pre-deployment: x"},
    "clone": "wa-backend-db-r20261130-0900",
    "env": "DATABASE_URL",
    "secret": "wa-backend-database-url",
    "secret_version": "latest",
    "new_secret": True,
    "revision": "wa-backend-00003",
    "approver_needed": True,
    "uses": "wa-backend-db",
    "secret_problem": "",
}
LAST = {"verdict": "proceed", "requests": 900, "error_rate": 0.001, "p95_ms": 120.0}
WAITING = {"since": AT.isoformat(), "newest": AT.isoformat(), "behind_s": 180.0}
ROWS = [
    {
        "id": "17",
        "automated": False,
        "status": "RUNNING",
        "successful": False,
        "age_s": 60.0,
        "at": AT,
        "description": "Pre-deployment: <b>",
        "error": "",
    },
    {
        "id": "16",
        "automated": True,
        "status": "SUCCESSFUL",
        "successful": True,
        "age_s": 3 * 86400.0,
        "at": AT,
        "description": "",
        "error": "",
    },
]
BACKUPS = {"service": "wa-backend", "instance": "wa-backend-db", "max_age_hours": 24}

DB_MESSAGES: list[Any] = [
    *[
        pytest.param("db_backup_card", {"b": backup_card(state)}, id=f"backup-{state}")
        for state in ("starting", "backing_up", "succeeded", "rejected", "expired", "cancelled")
    ],
    pytest.param(
        "db_backup_card",
        {"b": backup_card("awaiting_approval", approval={**APPROVAL, "action": "backup"})},
        id="backup-awaiting",
    ),
    pytest.param(
        "db_backup_card",
        {"b": backup_card("failed", error="boom at 10.1.2.3", unreachable="unavailable")},
        id="backup-failed",
    ),
    pytest.param(
        "db_backups",
        {**BACKUPS, "rows": ROWS, "newest": ROWS[1], "stale": True},
        id="backups-stale",
    ),
    pytest.param(
        "db_backups", {**BACKUPS, "rows": [], "newest": None, "stale": True}, id="backups-none"
    ),
    pytest.param(
        "db_backups",
        {**BACKUPS, "rows": ROWS[1:], "newest": {**ROWS[1], "age_s": 3600.0}, "stale": False},
        id="backups-fresh",
    ),
    pytest.param("db_restore_confirm", {"p": PREVIEW}, id="restore-confirm-new-secret"),
    pytest.param(
        "db_restore_confirm", {"p": {**PREVIEW, "new_secret": False}}, id="restore-confirm"
    ),
    *[
        pytest.param(
            "db_restore_confirm",
            {"p": {**PREVIEW, "uses": "wa-backend-db-r20261129-101010-ab12", "secret_problem": p}},
            id=f"restore-confirm-chained-{p or 'ok'}",
        )
        for p in ("", "url:old_instance_not_found", "permission_denied", "unavailable")
    ],
    pytest.param(
        "db_restore_card",
        {"r": restore_card("awaiting_approval", -1, approval=APPROVAL)},
        id="restore-awaiting",
    ),
    *[
        pytest.param("db_restore_card", {"r": restore_card(state, done)}, id=f"restore-{state}")
        for state, done in (
            ("approved", 0),
            ("creating", 0),
            ("restoring", 1),
            ("checking", 2),
            ("pointing", 3),
            ("deploying", 4),
            ("smoke", 5),
            ("shifting", 6),
            ("rejected", -1),
            ("expired", -1),
            ("cancelled", -1),
        )
    ],
    pytest.param(
        "db_restore_card",
        {"r": restore_card("judging", 7, last=LAST, unreachable="unavailable")},
        id="restore-judging",
    ),
    pytest.param(
        "db_restore_card",
        {"r": restore_card("judging", 7, last=LAST, waiting=WAITING)},
        id="restore-waiting-for-monitoring",
    ),
    pytest.param(
        "db_restore_card",
        {"r": restore_card("succeeded", 8, last=LAST, verified=False)},
        id="restore-succeeded",
    ),
    pytest.param(
        "db_restore_card",
        {"r": restore_card("going_back", 7, outcome={"step": "verify", "why": "error_rate"})},
        id="restore-going-back",
    ),
    pytest.param(
        "db_restore_card",
        {"r": restore_card("rolled_back", 8, outcome={"step": "verify", "why": "asked"})},
        id="restore-rolled-back",
    ),
    pytest.param(
        "db_restore_card",
        {"r": restore_card("failed", 1, outcome={"step": "restore", "why": "boom"})},
        id="restore-failed",
    ),
    *[
        pytest.param(
            "db_restore_card",
            {"r": restore_card("failed", 3, outcome={"step": "secret", "why": f"url:{problem}"})},
            id=f"restore-failed-url-{problem}",
        )
        for problem in ("not_a_url", "old_instance_not_found", "no_address")
    ],
    pytest.param(
        "db_restore_card",
        {
            "r": restore_card(
                "failed", 6, outcome={"step": "shift", "why": "x"}, going_back_failed="503"
            )
        },
        id="restore-failed-going-back",
    ),
    pytest.param(
        "db_restore_card",
        {"r": restore_card("cancelled", -1, outcome={"why": "superseded", "by": "U0ANA"})},
        id="restore-superseded",
    ),
    pytest.param(
        "db_restore_card",
        {"r": restore_card("creating", 0, yielded=YIELDED)},
        id="restore-stepped-aside",
    ),
    pytest.param(
        "db_restore_card",
        {
            "r": restore_card(
                "deploying",
                4,
                yielded=YIELDED,
                waiting_for={"kind": "rollback", "id": "op-7", "by": "U0ANA"},
            )
        },
        id="restore-waiting-for-the-service",
    ),
    pytest.param(
        "db_restore_card",
        {"r": restore_card("judging", 7, yielded=YIELDED, rebuilt={"was": "a-1", "on": "a-0"})},
        id="restore-rebuilt",
    ),
    pytest.param(
        "db_restore_card",
        {
            "r": restore_card(
                "going_back",
                7,
                outcome={"step": "verify", "why": "on_call", "by": "U0ANA", "reason": "<!here>"},
            )
        },
        id="restore-on-call-goes-back",
    ),
]
