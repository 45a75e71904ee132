"""The flag messages' cases for tests/test_templates.py: every state and outcome of the card,
the listing with every agreement, and every error and notice key of /flag."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.config import load_config
from bot.store import LockHolder

NOW = datetime(2025, 11, 27, 14, 0, tzinfo=UTC)
CONFIG = load_config(Path(__file__).resolve().parents[1] / "app.yaml")
STEPS = ("deploy", "verify", "shift", "watch")
HOSTILE = '<!channel> <https://evil.example|click me> <@U0LUIS> & "quotes"'


def make_flag(state: str, **over: Any) -> dict[str, Any]:
    """The ``f`` of bot/ops/flags/view.py flag_view."""
    done = {"succeeded": 4, "rolled_back": 3, "watching": 3, "failed": 1}.get(state, 0)
    flag: dict[str, Any] = {
        "id": "op-f1a9",
        "service": "wa-backend",
        "state": state,
        "requested_by": "U0MARTA",
        "reason": "the new checkout is ready",
        "flag": "NEW_CHECKOUT",
        "env": "FEATURE_FLAG_NEW_CHECKOUT",
        "value": True,
        "before": {"text": "false", "value": False},
        "previous": "wa-backend-00003",
        "revision": "wa-backend-00004-abc",
        "steps": [
            {"name": n, "status": "done" if i < done else "pending", "s": 1.5 if i < done else None}
            for i, n in enumerate(STEPS)
        ],
        "last": None,
        "watch_until": NOW,
        "observe_minutes": 5.0,
        "thresholds": CONFIG.thresholds.model_dump(),
        "outcome": {},
        "traffic_now": None,
        "health_path": "/health",
        "buttons": []
        if state in ("succeeded", "rolled_back", "failed", "cancelled")
        else ["roll_back"],
        "total_s": 312.0 if state in ("succeeded", "rolled_back", "failed", "cancelled") else None,
    }
    flag.update(over)
    return flag


JUDGED = {
    "at": NOW.isoformat(),
    "verdict": "rollback",
    "reasons": ["error_rate_high"],
    "requests": 240,
    "errors": 48,
    "error_rate": 0.2,
    "p95_ms": 123.0,
    "healthz_ok": True,
    "window_start": NOW.isoformat(),
    "window_s": 180.0,
}
OUTCOMES: dict[str, dict[str, Any]] = {
    "judged_bad": {"reasons": ["error_rate_high", "p95_high"]},
    "rolled_back_by": {"by": "U0ANA", "reason": "carts break"},
    "stopped": {"by": "U0ANA"},
    "unhealthy": {"check": "/health", "status": 500, "seen": "boom"},
    "flags_unreadable": {"problem": "bad_shape", "status": 200},
    "flag_not_read": {"said": False},
    "no_tag_url": {},
    "reserved_path": {"check": "/healthz"},
    "invoker_denied": {},
    "no_id_token": {},
    "deploy_failed": {"detail": "503 UNAVAILABLE"},
    "untag_failed": {"detail": "503 UNAVAILABLE"},
    "shift_failed": {"detail": "503 UNAVAILABLE"},
    "rollback_failed": {"detail": "503 UNAVAILABLE"},
    "internal": {},
}
END_STATE = {"judged_bad": "rolled_back", "rolled_back_by": "rolled_back", "stopped": "cancelled"}


def _card_cases() -> list[Any]:
    cases = [
        pytest.param("flag_card", {"f": make_flag(s), "alert": False}, id=f"flag-{s}")
        for s in ("deploying", "applying", "verifying", "untagging", "shifting", "rolling_back")
    ]
    cases += [
        pytest.param(
            "flag_card",
            {"f": make_flag("watching", last=JUDGED), "alert": False},
            id="flag-watching-judged",
        ),
        pytest.param(
            "flag_card",
            {"f": make_flag("succeeded", outcome={"code": "kept"}), "alert": False},
            id="flag-kept",
        ),
        pytest.param(
            "flag_card",
            {
                "f": make_flag(
                    "succeeded", before=None, value=False, outcome={"code": "kept_inconclusive"}
                ),
                "alert": False,
            },
            id="flag-kept-inconclusive",
        ),
    ]
    for code, detail in OUTCOMES.items():
        state = END_STATE.get(code, "failed")
        f = make_flag(
            state,
            outcome={"code": code, **detail},
            traffic_now={"wa-backend-00003": 100},
            reason="",
        )
        cases.append(pytest.param("flag_card", {"f": f, "alert": True}, id=f"flag-{code}"))
    return cases


LIST_BASE = {
    "service": "wa-backend",
    "url": "https://wa-backend-abc.a.run.app",
    "holder": None,
    "split": False,
    "answer": {"ok": True, "problem": "", "status": 200, "detail": ""},
}
ROWS = [
    {
        "name": "A",
        "env": "true",
        "from_secret": False,
        "env_value": True,
        "said": True,
        "agreement": "match",
    },
    {
        "name": "B",
        "env": "false",
        "from_secret": False,
        "env_value": False,
        "said": True,
        "agreement": "mismatch",
    },
    {
        "name": "C",
        "env": "yes",
        "from_secret": False,
        "env_value": True,
        "said": None,
        "agreement": "not_in_answer",
    },
    {
        "name": "D",
        "env": None,
        "from_secret": False,
        "env_value": None,
        "said": False,
        "agreement": "only_in_answer",
    },
    {
        "name": "E",
        "env": "",
        "from_secret": True,
        "env_value": None,
        "said": True,
        "agreement": "unknown",
    },
]
FLAG_HOLDER = LockHolder("op-f1a9", "flag", "watching", "U0MARTA", "wa-backend-00004-abc")

FLAG_MESSAGES: list[Any] = [
    *_card_cases(),
    pytest.param(
        "flag_list",
        {
            **LIST_BASE,
            "revisions": [
                {"revision": "wa-backend-00003", "percent": 100, "flags": ROWS, "mismatches": 4}
            ],
        },
        id="flag-list",
    ),
    pytest.param(
        "flag_list",
        {
            **LIST_BASE,
            "split": True,
            "holder": FLAG_HOLDER,
            "answer": {"ok": False, "problem": "http_status", "status": 503, "detail": ""},
            "revisions": [
                {"revision": "a", "percent": 90, "flags": [], "mismatches": 0},
                {"revision": "b", "percent": 10, "flags": [], "mismatches": 0},
            ],
        },
        id="flag-list-unreadable-split",
    ),
    pytest.param(
        "flag_card",
        {"f": make_flag("deploying", reason=HOSTILE * 50), "alert": False},
        id="flag-hostile-reason",
    ),
]

FLAG_EPHEMERAL_CASES: list[tuple[str, dict[str, Any]]] = [
    ("error.usage.flag", {}),
    (
        "error.flag.bad_name",
        {"name": "new-checkout", "problem": "characters", "suggestion": "NEW_CHECKOUT"},
    ),
    ("error.flag.bad_name", {"name": "X" * 120, "problem": "too_long", "suggestion": ""}),
    ("error.flag.bad_switch", {"switch": "maybe", "flag": "NEW_CHECKOUT"}),
    (
        "error.flag.already",
        {
            "service": "wa-backend",
            "flag": "NEW_CHECKOUT",
            "value": True,
            "revision": "wa-backend-00003",
            "env": "FEATURE_FLAG_NEW_CHECKOUT",
        },
    ),
    (
        "error.flag.from_secret",
        {
            "service": "wa-backend",
            "flag": "NEW_CHECKOUT",
            "value": True,
            "revision": "wa-backend-00003",
            "env": "FEATURE_FLAG_NEW_CHECKOUT",
        },
    ),
    (
        "error.flag.new_name",
        {
            "service": "wa-backend",
            "flag": "NEW_CHEKOUT",
            "value": True,
            "revision": "wa-backend-00003",
            "env": "FEATURE_FLAG_NEW_CHEKOUT",
            "similar": ["NEW_CHECKOUT"],
            "switch": "on",
            "reason": "<!channel> ready",
        },
    ),
    (
        "error.flag.split",
        {"service": "wa-backend", "serving": {"wa-backend-00003": 90, "wa-backend-00004": 10}},
    ),
    ("error.busy", {"service": "wa-backend", "holder": FLAG_HOLDER}),
    ("notice.flag.over", {"state": "rolled_back"}),
    ("notice.moving", {}),
]
