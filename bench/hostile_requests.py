"""The hostile bench's requests (``python -m bench.hostile``): what every case shares (a
sandbox on either database, signing, the footprint a request leaves), then the transport,
malformed, forged and limit cases."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests
from sqlalchemy import func, select

from bench.common import fresh_schema
from bot.config import Config, load_config
from bot.policy.migrations import MAX_SQL_CHARS
from bot.sandbox.console import Sandbox
from bot.sandbox.slack_payloads import (
    FORM,
    button_click,
    find_button,
    input_values,
    view_submission,
)
from bot.store import Operation
from bot.store_migrations import ReleaseCandidate

ROOT = Path(__file__).resolve().parents[1]

SERVICE = "wa-backend"
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"
DROP = "ALTER TABLE reservas DROP COLUMN fecha;"
ADD = "ALTER TABLE reservas ADD COLUMN notes VARCHAR(500);"
FLAG = "FEATURE_FLAG_NEW_SCHEMA"
COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"
OVERRIDE = "Release anyway (tech lead)"


@dataclass(frozen=True)
class Result:
    group: str
    case: str
    backend: str
    expect: str  # refused | acted
    seen: str  # refused | acted | 5xx
    status: int | None

    @property
    def ok(self) -> bool:
        return self.seen == self.expect


# -- the sandbox, on either database ------------------------------------------------------------


def config(gated: bool = False) -> Config:
    loaded = load_config(ROOT / "app.yaml")
    rollback = loaded.rollback.model_copy(update={"health_check_interval_s": 0})
    readiness = loaded.readiness.model_copy(update={"block_production": gated})
    updates: dict[str, Any] = {"rollback": rollback, "readiness": readiness}
    if gated:  # a runbook reviewed ten days ago: only the drill and the procedure fail
        reviewed = (datetime.now(UTC).date() - timedelta(days=10)).isoformat()
        updates["disaster_recovery"] = loaded.disaster_recovery.model_copy(
            update={"reviewed": reviewed}
        )
    return loaded.model_copy(update=updates)


@contextmanager
def database(backend: str) -> Iterator[str]:
    """ "" (the sandbox's own SQLite file) or the URL of a new PostgreSQL schema."""
    if backend == "sqlite":
        yield ""
        return
    with fresh_schema(os.environ["DATABASE_URL_POSTGRES"], "runback_hostile") as url:
        yield url


@contextmanager
def sandbox(backend: str, gated: bool = False) -> Iterator[Sandbox]:
    with database(backend) as url:
        box = Sandbox(config(gated), retry_deadline_s=1.5, database_url=url)
        try:
            yield box
        finally:
            box.close()


def footprint(box: Sandbox) -> tuple[int, int, int, int]:
    """Operations, release candidates, Cloud Run PATCHes, messages posted to channels."""
    box.runtime.engine.wait_idle(timeout_s=60)
    with box.runtime.deps.store.session() as session:
        operations = session.scalar(select(func.count()).select_from(Operation)) or 0
        candidates = session.scalar(select(func.count()).select_from(ReleaseCandidate)) or 0
    posted = [m for m in box.emulator.slack.messages() if not m.get("ephemeral_to")]
    patches = box.emulator.router.calls.list("run.services.patch")
    return operations, candidates, len(patches), len(posted)


def observe(
    results: list[Result],
    box: Sandbox,
    group: str,
    case: str,
    backend: str,
    expect: str,
    send: Callable[[], requests.Response | None],
) -> None:
    before = footprint(box)
    response = send()
    after = footprint(box)
    status = response.status_code if response is not None else None
    if status is not None and status >= 500:
        seen = "5xx"
    else:
        seen = "refused" if after == before else "acted"
    results.append(Result(group, case, backend, expect, seen, status))


# -- what is sent ---------------------------------------------------------------------------------


def post(box: Sandbox, body: bytes, headers: dict[str, str]) -> requests.Response:
    return box.http.post(box.bot_url, data=body, headers=headers, timeout=15)


def sign(secret: str, body: bytes, stamp: int | None = None, kind: str = FORM) -> dict[str, str]:
    import hashlib
    import hmac

    stamp = int(time.time()) if stamp is None else stamp
    base = b"v0:" + str(stamp).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": kind,
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": f"v0={digest}",
    }


def rollback_body(box: Sandbox, text_: str = f"{SERVICE} checkout errors") -> bytes:
    box.run_line("as ana")
    box.run_line("in incidents")
    return box.slash_body(f"/rollback {text_}").encode()


def interaction(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def command_form(**fields: str) -> bytes:
    base = {
        "team_id": "T0SANDBOX",
        "channel_id": "C0INCIDENTS",
        "user_id": "U0ANA",
        "command": "/rollback",
        "text": SERVICE,
        "trigger_id": "1.2.3",
        "response_url": "http://127.0.0.1:9/nowhere",
    }
    return urlencode({k: v for k, v in {**base, **fields}.items() if v is not None}).encode()


def transport(results: list[Result], box: Sandbox, backend: str) -> None:
    group, secret = "transport", box.signing_secret
    body = rollback_body(box)
    cases: list[tuple[str, Callable[[], requests.Response]]] = [
        ("unsigned", lambda: post(box, body, {"Content-Type": FORM})),
        ("signed with another secret", lambda: post(box, body, sign("not-the-secret", body))),
        ("signature for another body", lambda: post(box, body, sign(secret, body + b"x"))),
        (
            "stale: signed 6 minutes ago",
            lambda: post(box, body, sign(secret, body, int(time.time()) - 360)),
        ),
        (
            "from the future: +6 minutes",
            lambda: post(box, body, sign(secret, body, int(time.time()) + 360)),
        ),
        (
            "timestamp not a number",
            lambda: post(box, body, {**sign(secret, body), "X-Slack-Request-Timestamp": "x"}),
        ),
        ("body over 1 MiB", lambda: post(box, b"a" * (1024 * 1024 + 1), sign(secret, b"a"))),
        (
            "not UTF-8",
            lambda: post(
                box,
                b"command=%2Frollback&text=\xff",
                sign(secret, b"command=%2Frollback&text=\xff"),
            ),
        ),
    ]
    for name, send in cases:
        observe(results, box, group, name, backend, "refused", send)

    malformed: dict[str, bytes] = {
        "payload=x": b"payload=x",
        "payload is a JSON list": interaction([1, 2]),
        "block_actions without actions": interaction({"type": "block_actions"}),
        "a command without user_id": command_form(user_id=None),  # type: ignore[arg-type]
        "a command without channel_id": command_form(channel_id=None),  # type: ignore[arg-type]
        "a view_submission without user": interaction(
            {"type": "view_submission", "view": {"callback_id": "deploy_migration"}}
        ),
        "a view_submission whose view is a string": interaction(
            {"type": "view_submission", "user": {"id": "U0MARTA"}, "view": "V1"}
        ),
        "a click whose user is a string": interaction(
            {
                "type": "block_actions",
                "user": "U0LUIS",
                "channel": {"id": "C0INCIDENTS"},
                "actions": [{"action_id": "release_roll_back", "value": "x"}],
            }
        ),
    }
    for name, raw in malformed.items():
        observe(
            results,
            box,
            "malformed",
            name,
            backend,
            "refused",
            lambda raw=raw: post(box, raw, sign(secret, raw)),  # type: ignore[misc]
        )

    fresh = rollback_body(box)
    headers = sign(secret, fresh)
    observe(
        results,
        box,
        group,
        "a signed /rollback (control)",
        backend,
        "acted",
        lambda: post(box, fresh, headers),
    )
    observe(
        results,
        box,
        "replayed",
        "the same bytes again, same process",
        backend,
        "refused",
        lambda: post(box, fresh, headers),
    )


def open_deploy_form(box: Sandbox) -> dict[str, Any]:
    box.run_line("as marta")
    box.run_line("in incidents")
    box.run_line(f"/deploy {SERVICE} {IMAGE} --migration")
    user = box.users["marta"]
    record = [v for v in box.emulator.slack.views() if v["user"] == user][-1]
    return {**record["view"], "id": record["id"], "hash": record["hash"]}


def submit(box: Sandbox, view: dict[str, Any], typed: dict[str, str]) -> requests.Response:
    user = box.users["marta"]
    trigger = box.emulator.slack.issue_trigger_id(user)
    body = view_submission(view, input_values(view, typed), user, "marta", trigger).encode()
    return post(box, body, sign(box.signing_secret, body))


def ci(box: Sandbox, payload: dict[str, Any]) -> requests.Response:
    url = box.bot_url.replace("/slack/events", "/ci/releases")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {box.alert_token}"}
    return box.http.post(url, data=json.dumps(payload).encode(), headers=headers, timeout=30)


Button = tuple[dict[str, Any], dict[str, Any], str]  # (message, button, block_id)


def button_of(box: Sandbox, label: str) -> Button:
    found = find_button(box.emulator.slack.messages(), label)
    assert found is not None, label
    return found


def click_with_value(box: Sandbox, found: Button, value: str) -> requests.Response:
    """Click a button seen earlier (a forged click needs no message still showing it)."""
    message, button, block_id = found
    user = box.users[box.user]
    url = box.emulator.slack.new_response_url(message["channel"], user, message["ts"])
    raw = button_click(
        message, {**button, "value": value}, block_id, user, box.user, box.channel, url
    )
    return post(box, raw.encode(), sign(box.signing_secret, raw.encode()))


def forged(results: list[Result], backend: str) -> None:
    group = "forged"
    with sandbox(backend, gated=True) as box:
        box.run_line("as sofia")
        box.run_line(f"/deploy {SERVICE} {IMAGE}")  # blocked by the readiness checklist
        box.run_line("as luis")
        override = button_of(box, OVERRIDE)
        naming_marta = json.dumps({"service": SERVICE, "image": IMAGE, "user": "U0MARTA"})
        observe(
            results,
            box,
            group,
            "Release anyway, value naming marta",
            backend,
            "refused",
            lambda: click_with_value(box, override, naming_marta),
        )
        rows = box.runtime.deps.store.journal.audit()
        other = next(r.id for r in rows if r.action != "release.blocked")
        blocked = next(r.id for r in rows if r.action == "release.blocked")
        observe(
            results,
            box,
            group,
            "Release anyway, another record's id",
            backend,
            "refused",
            lambda: click_with_value(box, override, json.dumps({"blocked": other})),
        )
        box.run_line("as eve")
        observe(
            results,
            box,
            group,
            "Release anyway by a developer",
            backend,
            "refused",
            lambda: click_with_value(box, override, json.dumps({"blocked": blocked})),
        )
    with sandbox(backend) as box:
        view = open_deploy_form(box)
        tampered = {
            **view,
            "private_metadata": json.dumps(
                {"channel": "C0ELSEWHERE", "service": SERVICE, "image": IMAGE}
            ),
        }
        observe(
            results,
            box,
            group,
            "deploy form naming another channel",
            backend,
            "refused",
            lambda: submit(box, tampered, {"sql": ADD}),
        )
        box.run_line("as ana")
        observe(
            results,
            box,
            group,
            "deploy form of marta sent by ana",
            backend,
            "refused",
            lambda: submit_as(box, view, "ana", {"sql": ADD}),
        )
        ci(box, {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "migration_sql": DROP})
        view = open_deploy_form(box)
        observe(
            results,
            box,
            group,
            "harmless SQL over CI's destructive verdict",
            backend,
            "refused",
            lambda: submit(box, view, {"sql": ADD}),
        )


def submit_as(
    box: Sandbox, view: dict[str, Any], name: str, typed: dict[str, str]
) -> requests.Response:
    user = box.users[name]
    trigger = box.emulator.slack.issue_trigger_id(user)
    body = view_submission(view, input_values(view, typed), user, name, trigger).encode()
    return post(box, body, sign(box.signing_secret, body))


def limits(results: list[Result], backend: str) -> None:
    group = "limits"
    nested = "ALTER TABLE t ADD COLUMN c INT DEFAULT " + "(" * 200 + "1" + ")" * 200 + ";"
    too_long = "-- " + "x" * MAX_SQL_CHARS + "\n" + ADD
    with sandbox(backend) as box:
        payload = {"service": SERVICE, "image": IMAGE, "commit": COMMIT, "dialect": "mysql"}
        observe(
            results,
            box,
            group,
            "CI: MySQL nested 200 deep (a verdict)",
            backend,
            "acted",
            lambda: ci(box, {**payload, "migration_sql": nested}),
        )
        observe(
            results,
            box,
            group,
            "CI: SQL over the limit",
            backend,
            "refused",
            lambda: ci(box, {**payload, "image": IMAGE + "-2", "migration_sql": too_long}),
        )
        view = open_deploy_form(box)
        observe(
            results,
            box,
            group,
            "deploy form: SQL over the limit",
            backend,
            "refused",
            lambda: submit(box, view, {"sql": too_long, "flag": FLAG}),
        )


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
