"""Whole processes, as users run them: `python -m bot serve` killed mid-rollback and restarted,
`python -m bot sandbox --script`, and a broken app.yaml."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from bot.config import load_config
from bot.ops.release.states import ReleaseData
from bot.sandbox.console_run import run_console
from bot.sandbox.emulator.http import Fault
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.slack_payloads import button_click, find_button, signed_headers
from tests.conftest import TEST_SETTLE_S
from tests.helpers import (
    REPO,
    SECRET,
    BotProcess,
    app_yaml,
    card_text,
    send_command,
    wait_until,
)


def send_rollback(emulator: Emulator, port: int) -> None:
    send_command(emulator, port, "/rollback", "wa-backend")


def test_bot_killed_mid_rollback_finishes_it_after_restart(world) -> None:
    emulator, bot = world
    emulator.cloudrun.operation_delay_s = 3.0  # the traffic update takes a while to apply
    bot.start()
    send_rollback(emulator, bot.port)

    def operation_name_committed() -> bool:
        operation = bot.last_operation()
        return bool(operation and operation.cloud_operation and operation.state == "shifting")

    wait_until(operation_name_committed, what="the PATCH's operation name in the store")
    wait_until(lambda: "shifting" in card_text(emulator), what="the card to say so")
    bot.kill()

    bot.start()
    try:
        wait_until(lambda: "done" in card_text(emulator), timeout_s=30, what="the rollback")
    except AssertionError:
        operation = bot.last_operation()
        state = (operation.state, operation.data) if operation else None
        raise AssertionError(f"{card_text(emulator)!r} {state}\n{bot.log_tail()}") from None
    assert len(emulator.router.calls.list("run.services.patch")) == 1, "nothing applied twice"
    assert emulator.cloudrun.traffic("wa-backend")[0] == {
        "revision": "wa-backend-00002",
        "percent": 100,
        "tag": "",
    }


def test_bot_killed_before_any_patch_resumes_from_the_start(world) -> None:
    emulator, bot = world
    emulator.router.faults.add(Fault("run.services.get", None, delay_ms=3000, times=2))
    bot.start()
    send_rollback(emulator, bot.port)

    def shift_started() -> bool:
        operation = bot.last_operation()
        return bool(
            operation and [s.name for s in bot.store.operations.steps(operation.id)] == ["shift"]
        )

    wait_until(shift_started, what="the shift step to start (reading the service, no PATCH)")
    bot.kill()
    assert emulator.router.calls.list("run.services.patch") == []
    operation = bot.last_operation()
    assert operation is not None and operation.state == "approved" and not operation.cloud_operation

    bot.start()
    wait_until(
        lambda: any(word in card_text(emulator) for word in ("done", "failed")),
        timeout_s=30,
        what="the rollback to end",
    )
    assert "done" in card_text(emulator)
    assert len(emulator.router.calls.list("run.services.patch")) == 1
    steps = [(s.name, s.status) for s in bot.store.operations.steps(operation.id)]
    assert steps == [
        ("shift", "started"),  # the killed run: it never got to its PATCH
        ("shift", "done"),  # the restart began again from the shift, and sent the one PATCH
        ("wait", "done"),
        ("verify", "done"),
    ]
    events = [e.kind for e in bot.store.journal.timeline(operation.id)]
    assert events.count("requested") == 1 and "etag_conflict_retry" not in events


def test_release_killed_during_its_deploy_continues_without_deploying_twice(world) -> None:
    emulator, bot = world
    emulator.cloudrun.operation_delay_s = 2.0
    bot.start()
    image = "us-docker.pkg.dev/runback-sandbox/apps/wa:2.0"
    send_command(emulator, bot.port, "/deploy", f"wa-backend {image}", user="U0MARTA")

    def deploy_committed() -> bool:
        operation = bot.last_operation()
        return bool(operation and operation.state == "applying")

    wait_until(deploy_committed, what="the deploy's operation name in the store")
    bot.kill()
    bot.start()

    def green_at_ten() -> bool:
        shares = {r["revision"]: r["percent"] for r in emulator.cloudrun.traffic("wa-backend")}
        return sorted(shares.values()) == [10, 90]

    wait_until(green_at_ten, timeout_s=30, what="the release to reach 10%")
    patches = emulator.router.calls.list("run.services.patch")
    deploys = [p for p in patches if "template" in (p.body or {})]
    assert len(deploys) == 1, "green was deployed once"
    assert len(patches) == 2, "one deploy and one shift to 10%, nothing twice"
    rows = emulator.cloudrun.traffic("wa-backend")
    assert [r["tag"] for r in rows if r["tag"]] == ["green"]


def click(emulator: Emulator, port: int, label: str, user: str, value: str | None = None) -> None:
    """Click the newest button labelled ``label`` as ``user`` (optionally with a forged value)."""
    found = find_button(emulator.slack.messages("C0INCIDENTS"), label)
    assert found is not None, f"no {label!r} button"
    message, button, block_id = found
    if value is not None:
        button = {**button, "value": value}
    url = emulator.slack.new_response_url("C0INCIDENTS", user)
    body = button_click(message, button, block_id, user, user.lower(), "incidents", url)
    response = requests.post(
        f"http://127.0.0.1:{port}/slack/events",
        data=body.encode(),
        headers=signed_headers(SECRET, body),
        timeout=5,
    )
    assert response.status_code == 200


def kill_right_after_the_decision(
    emulator: Emulator, bot: BotProcess, operation_id: str, button: str, user: str
) -> None:
    """Click ``button`` as ``user`` while Cloud Logging hangs on the decision's audit entry,
    and kill the bot right after the database has the decision, before anything else is done
    about it."""
    writes = len(emulator.router.calls.list("logging.entries.write"))
    emulator.router.faults.add(Fault("logging.entries.write", None, delay_ms=10_000, times=1))
    click(emulator, bot.port, button, user)

    def decision_stored() -> bool:
        approval = bot.store.approvals.approval_for(operation_id)
        return approval is not None and approval.status == "approved"

    wait_until(decision_stored, what="the decision in the store")
    wait_until(
        lambda: len(emulator.router.calls.list("logging.entries.write")) > writes,
        what="the audit write that hangs",
    )
    bot.kill()


def test_bot_killed_while_an_approval_click_is_handled_leaves_nothing_stuck(world) -> None:
    emulator, bot = world
    bot.start()
    send_command(emulator, bot.port, "/rollback", "wa-backend planned", user="U0LUIS")
    wait_until(lambda: find_button(emulator.slack.messages("C0INCIDENTS"), "Approve"), what="card")
    request = bot.last_operation()
    assert request is not None and request.state == "awaiting_approval"
    kill_right_after_the_decision(emulator, bot, request.id, "Approve", "U0SOFIA")
    operation = bot.store.operations.operation(request.id)
    assert operation is not None and operation.state == "approved", "decided with its next state"
    assert bot.store.operations.lock_holder("wa-backend") is not None
    assert emulator.router.calls.list("run.services.patch") == []

    bot.start()  # the recovery pass resumes the approved rollback
    wait_until(lambda: "done" in card_text(emulator), timeout_s=30, what="the rollback to finish")
    assert len(emulator.router.calls.list("run.services.patch")) == 1
    assert bot.store.operations.lock_holder("wa-backend") is None
    operation = bot.store.operations.operation(request.id)
    assert operation is not None and operation.state == "succeeded"


def test_release_killed_during_approve_100_carries_on_after_restart(world) -> None:
    emulator, bot = world
    config_path = Path(bot.env["RUNBACK_CONFIG"])
    data = yaml.safe_load(config_path.read_text())
    data["release"]["steps"] = [100]  # straight from the smoke test to the Approve 100% step
    config_path.write_text(yaml.safe_dump(data))
    bot.start()
    image = "us-docker.pkg.dev/runback-sandbox/apps/wa:2.0"
    send_command(emulator, bot.port, "/deploy", f"wa-backend {image}", user="U0MARTA")

    def awaiting() -> bool:
        operation = bot.last_operation()
        return bool(operation and operation.state == "awaiting_approval")

    wait_until(awaiting, timeout_s=30, what="the release to ask for Approve 100%")
    wait_until(
        lambda: find_button(emulator.slack.messages("C0INCIDENTS"), "Approve 100%"),
        what="the Approve 100% button",
    )
    release = bot.last_operation()
    assert release is not None
    kill_right_after_the_decision(emulator, bot, release.id, "Approve 100%", "U0LUIS")
    operation = bot.store.operations.operation(release.id)
    assert operation is not None and operation.state == "shifting", "decided with its next state"
    assert ReleaseData.of(operation).full_traffic_approved_by == "U0LUIS"
    assert len(emulator.router.calls.list("run.services.patch")) == 1, "only the deploy so far"

    bot.start()

    def green_at_100() -> bool:
        shares = {r["revision"]: r["percent"] for r in emulator.cloudrun.traffic("wa-backend")}
        return shares.get(release.to_revision) == 100

    wait_until(green_at_100, timeout_s=30, what="the approved 100% step after the restart")
    assert len(emulator.router.calls.list("run.services.patch")) == 2, "one deploy, one shift"
    wait_until(
        lambda: bot.store.operations.operation(release.id).state == "judging",  # type: ignore[union-attr]
        what="the validation window at 100%",
    )


EXAMPLES = [
    ("release.txt", "Released"),
    ("incident.txt", "Rollback triggered"),
    ("migration-check.txt", "feature flag"),
    ("migration-release.txt", "Not an emergency rollback"),
    ("flag.txt", "Traffic is back on"),
    ("backup.txt", "on demand · successful"),
    ("restore.txt", "wa-backend-00003 100%"),
    ("check.txt", "Released past the checklist by @luis"),
    ("drill.txt", "passed · safe in"),
]


def test_the_demo_script_runs_as_a_user_runs_it(tmp_path: Path) -> None:
    """`python -m bot sandbox --script`, as the README shows it; the other examples run the same
    console in this process (below), sparing a Python start each."""
    # The shipped app.yaml, but the console waits TEST_SETTLE_S (not 50 ms) for the bot to be
    # quiet after each line and each step of a `wait`.
    config = str(app_yaml(tmp_path, sandbox={"settle_s": TEST_SETTLE_S}))
    argv = ["sandbox", "--config", config, "--script", "examples/demo.txt"]
    result = subprocess.run(
        [sys.executable, "-m", "bot", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wa-backend-00002 100%" in result.stdout


@pytest.mark.parametrize(("script", "shown"), EXAMPLES)
def test_sandbox_example_scripts_run(script: str, shown: str, tmp_path: Path) -> None:
    config = load_config(app_yaml(tmp_path, sandbox={"settle_s": TEST_SETTLE_S}))
    out = io.StringIO()
    code = run_console(config, script=str(REPO / "examples" / script), out=out)
    assert code == 0, out.getvalue()
    assert shown in out.getvalue()


def test_sandbox_script_fails_on_a_broken_line(tmp_path: Path) -> None:
    script = tmp_path / "broken.txt"
    script.write_text("as ana\nclick Approve\n")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "sandbox", "--script", str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "broken.txt:2: no button labelled 'Approve'" in result.stdout


def test_broken_app_yaml_fails_at_start_with_the_key_path(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "app.yaml").read_text())
    del data["services"][1]["region"]
    broken = tmp_path / "app.yaml"
    broken.write_text(yaml.safe_dump(data))
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(broken), "serve"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "services[1].region: field required" in result.stderr


def test_bot_killed_while_its_card_is_being_posted_does_not_post_it_twice(world) -> None:
    emulator, bot = world
    # Slack takes the post, but answers only after the bot is gone.
    emulator.router.faults.add(Fault("slack.chat.postMessage", None, delay_ms=1500, times=1))
    bot.start()
    send_rollback(emulator, bot.port)
    wait_until(lambda: emulator.router.calls.list("slack.chat.postMessage"), what="the post")
    bot.kill()
    wait_until(lambda: card_text(emulator), what="Slack to show the card the bot never saw")

    bot.start()
    wait_until(lambda: "done" in card_text(emulator), timeout_s=60, what="the card's final state")
    cards = [m for m in emulator.slack.messages("C0INCIDENTS") if not m.get("ephemeral_to")]
    assert len(cards) == 1, "one operation, one card"
    assert len(emulator.router.calls.list("slack.chat.postMessage")) == 1
    assert emulator.router.calls.list("slack.conversations.history"), "it looked before posting"
