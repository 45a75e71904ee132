"""The hostile bench's faults (``python -m bench.hostile``): an on-call rollback during a
release's backup, Runback's database held during it, and a replay after ``kill -9``."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import func, select, text

from bench.common import BOT_TOKEN, free_port, serve_env, write_config
from bench.hostile_requests import (
    DROP,
    FLAG,
    SERVICE,
    Result,
    database,
    open_deploy_form,
    sandbox,
    submit,
    wait_for,
)
from bot.config import load_config
from bot.database import make_engine
from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.seed import seed
from bot.sandbox.slack_payloads import (
    signed_headers,
    slash_command,
)
from bot.store import Operation, Store

ROOT = Path(__file__).resolve().parents[1]

# -- faults: on-call during a backup, the database held, a replay after kill -9 -------------------


def latest_release(box: Sandbox) -> Operation | None:
    with box.runtime.deps.store.session() as session:
        query = select(Operation).where(Operation.kind == "release")
        return session.scalars(query.order_by(Operation.created_at.desc())).first()


def backing_up(box: Sandbox) -> None:
    view = open_deploy_form(box)
    submit(box, view, {"sql": DROP, "flag": FLAG})
    box.runtime.engine.wait_idle(timeout_s=60)
    release = latest_release(box)
    assert release is not None and release.state == "backing_up", release


def serving(box: Sandbox) -> dict[str, int]:
    rows = box.emulator.cloudrun.traffic(SERVICE)
    return {r["revision"]: r["percent"] for r in rows if r["percent"]}


def faults(results: list[Result], backend: str) -> None:
    """What must happen, happened ("acted"): traffic left the serving revision; the release
    went on past its backup."""
    with sandbox(backend) as box:
        backing_up(box)
        before = serving(box)
        box.run_line("as ana")
        box.run_line(f"/rollback {SERVICE} checkout errors")
        box.runtime.engine.wait_idle(timeout_s=60)
        left = serving(box) != before and not set(serving(box)) & set(before)
        results.append(
            Result(
                "fault",
                "on-call /rollback during the backup: traffic left",
                backend,
                "acted",
                "acted" if left else "refused",
                None,
            )
        )
    with sandbox(backend) as box:
        backing_up(box)
        from bot.sandbox.emulator.http import Fault

        box.emulator.router.faults.add(Fault("sql.operations.get", None, delay_ms=1000, times=1))
        box.clock.advance(180)
        wait_for(lambda: bool(box.emulator.router.calls.list("sql.operations.get")), 30, "read")
        hold_database(box, 9)
        wait_for(lambda: latest_release(box).state != "backing_up", 60, "the release")  # type: ignore[union-attr]
        box.runtime.engine.wait_idle(timeout_s=60)
        state = latest_release(box).state  # type: ignore[union-attr]
        results.append(
            Result(
                "fault",
                "database held 9 s during the backup: release went on",
                backend,
                "acted",
                "acted" if state == "awaiting_approval" else state,
                None,
            )
        )


def hold_database(box: Sandbox, seconds: float) -> None:
    """Another connection holds Runback's tables for ``seconds`` (a migration, a dump)."""
    import sqlite3

    url = box._settings.database_url
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        connection.execute("BEGIN EXCLUSIVE")
        connection.execute("UPDATE operations SET updated_at = updated_at")
        time.sleep(seconds)
        connection.rollback()
        connection.close()
        return
    engine = make_engine(url)
    with engine.begin() as held:
        held.execute(text("LOCK TABLE operations IN ACCESS EXCLUSIVE MODE"))
        time.sleep(seconds)
    engine.dispose()


# -- a replay after kill -9 and a restart ---------------------------------------------------------


def replay_after_restart(results: list[Result], backend: str) -> None:
    """`python -m bot serve`, a signed /rollback, kill -9, restart, the same bytes again."""
    secret = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp, database(backend) as pg_url:
        url = pg_url or f"sqlite:///{Path(tmp) / 'runback.db'}"
        path = write_config(Path(tmp) / "app.yaml")
        emulator = Emulator(slack_token=BOT_TOKEN).start()
        seed(emulator, load_config(path))
        port = free_port()
        env = serve_env(emulator, port, url, secret, path, RUNBACK_LEASE_S="1")
        events = f"http://127.0.0.1:{port}/slack/events"
        process = start_bot(env, port, Path(tmp) / "bot-1.log")
        store = Store(url)
        try:
            response_url = emulator.slack.new_response_url("C0INCIDENTS", "U0ANA")
            body = slash_command(
                "/rollback",
                f"{SERVICE} wa-backend-00001 captured",
                "U0ANA",
                "ana",
                "C0INCIDENTS",
                "incidents",
                response_url,
            )
            headers = signed_headers(secret, body)
            requests.post(events, data=body.encode(), headers=headers, timeout=10)
            wait_for(lambda: count_settled(store) == 1, 60, "the first rollback")
            back = slash_command(
                "/rollback",
                f"{SERVICE} wa-backend-00003 back",
                "U0ANA",
                "ana",
                "C0INCIDENTS",
                "incidents",
                response_url,
            )
            requests.post(
                events, data=back.encode(), headers=signed_headers(secret, back), timeout=10
            )
            wait_for(lambda: count_settled(store) == 2, 60, "the rollback back")
            patches = len(emulator.router.calls.list("run.services.patch"))
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            log = Path(tmp) / "bot-2.log"
            process = start_bot(env, port, log)
            answer = requests.post(events, data=body.encode(), headers=headers, timeout=10)
            wait_for(
                lambda: count_all(store) > 2 or "replayed" in log.read_text(errors="replace"),
                30,
                "the replay to be refused or acted on",
            )
            acted = (
                count_all(store) > 2
                or len(emulator.router.calls.list("run.services.patch")) > patches
            )
            seen = "5xx" if answer.status_code >= 500 else ("acted" if acted else "refused")
            results.append(
                Result(
                    "replayed",
                    "the same bytes after kill -9 and a restart",
                    backend,
                    "refused",
                    seen,
                    answer.status_code,
                )
            )
        finally:
            store.close()
            if process.poll() is None:
                process.terminate()
                process.wait(10)
            emulator.stop()


def start_bot(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def healthy() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).ok
        except requests.RequestException:
            return False

    wait_for(healthy, 60, "the bot to start")
    return process


def count_all(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Operation)) or 0)


def count_settled(store: Store) -> int:
    with store.session() as session:
        states = session.scalars(select(Operation.state).where(Operation.kind == "rollback"))
        return sum(1 for s in states if s in ("succeeded", "failed"))
