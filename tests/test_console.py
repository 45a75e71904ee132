"""The sandbox console as people use it: `python -m bot sandbox` fed a script, or lines piped in,
read as a transcript. Waits are on the process's output, with a deadline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from bot.sandbox.console import ConsoleError, Sandbox
from bot.slack.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8"}
PROMPT = re.compile(r"^\w+@#[\w-]+> ")
IMAGE = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"


def sandbox_run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "sandbox", *args],
        cwd=REPO,
        env=ENV,
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=180,
    )


def answer(transcript: str, line: str) -> list[str]:
    """What the console printed for ``line``: the lines between its echo and the next prompt."""
    lines = transcript.splitlines()
    start = next(i for i, shown in enumerate(lines) if PROMPT.sub("", shown) == line) + 1
    end = next((i for i in range(start, len(lines)) if PROMPT.match(lines[i])), len(lines))
    return lines[start:end]


# -- piped lines: one run, many lines (the console goes on after an error) ----------------------

PIPED = [
    "/rollback wa-backend it's broken",
    "set",
    "set wa-backend-00003",
    "set wa-backend-00003 healthz=abc",
    "set wa-backend-00003 colour=red",
    "set wa-backend-99999 healthz=500",
    "fault nope.api 503",
    "fault run.services.pach 503",
    "fault run.services.patch",
    "/rollbak wa-backend",
    "traffic wa-backend",
]


@pytest.fixture(scope="module")
def piped() -> subprocess.CompletedProcess[str]:
    return sandbox_run(stdin="".join(f"{line}\n" for line in PIPED))


def test_piped_lines_are_echoed_after_their_prompt_like_a_terminal_session(piped) -> None:
    assert piped.returncode == 0, piped.stdout + piped.stderr
    echoed = [PROMPT.sub("", line) for line in piped.stdout.splitlines() if PROMPT.match(line)]
    assert echoed == PIPED
    assert "ana@#incidents> /rollback wa-backend it's broken" in piped.stdout.splitlines()


def test_an_apostrophe_goes_to_slack_verbatim_and_the_console_goes_on(piped) -> None:
    shown = answer(piped.stdout, "/rollback wa-backend it's broken")
    assert "*Reason:* it's broken" in shown
    assert any("Done in" in line for line in shown)
    assert answer(piped.stdout, "traffic wa-backend") == [
        "wa-backend-00002 100% · flags BETA_SEARCH=false NEW_CHECKOUT=false"
    ]
    assert "Traceback" not in piped.stdout + piped.stderr


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("set", "! use: set REVISION KEY=VALUE ... with KEY in healthz, error_rate, p95_ms, rps"),
        ("set wa-backend-00003", "! use: set REVISION KEY=VALUE"),
        ("set wa-backend-00003 healthz=abc", "! 'healthz=abc': healthz must be a number"),
        ("set wa-backend-00003 colour=red", "! 'colour=red': use: set REVISION KEY=VALUE"),
        ("set wa-backend-99999 healthz=500", "! no revision named 'wa-backend-99999'"),
        (
            "fault nope.api 503",
            "! no emulator API 'nope.api'; known: iamcredentials.*, logging.*, metadata.*",
        ),
        ("fault run.services.pach 503", "! no emulator API 'run.services.pach'; did you mean run"),
        ("fault run.services.patch", "! use: fault API STATUS [TIMES]"),
    ],
)
def test_a_bad_console_line_gets_one_line_saying_why(piped, line: str, error: str) -> None:
    shown = answer(piped.stdout, line)
    assert len(shown) == 1 and shown[0].startswith(error), shown


def test_a_refused_line_changes_nothing(sandbox: Sandbox) -> None:
    before = sandbox.emulator.cloudrun.set_behaviour("wa-backend-00003")
    for line in ("fault run.services.pach 503", "set wa-backend-00003 healthz=500 rps=lots"):
        with pytest.raises(ConsoleError):
            sandbox.run_line(line)
    assert sandbox.emulator.router.faults.list() == []
    assert sandbox.emulator.cloudrun.set_behaviour("wa-backend-00003") == before


def test_an_unknown_slash_command_names_the_known_ones_not_a_bolt_hint(piped) -> None:
    shown = answer(piped.stdout, "/rollbak wa-backend")
    assert shown[0] == (
        "I don't know `/rollbak`. Did you mean `/rollback`? My commands: `/rollback`, `/deploy`,"
        " `/traffic`, `/flag`, `/ops`. `/ops help` explains them."
    )
    assert shown[1:] == ["  (only visible to you)"]
    assert "Unhandled request" not in piped.stderr
    assert "@app.command" not in piped.stdout + piped.stderr


# -- Bolt: the fallback answers only what no other listener takes ------------------------------


def test_every_command_of_the_slack_manifest_reaches_its_own_handler(sandbox: Sandbox) -> None:
    manifest = yaml.safe_load((REPO / "slack-manifest.yaml").read_text())
    listed = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert sorted(listed) == sorted(COMMANDS)
    for command in listed:
        shown = "\n".join(sandbox.run_line(command))
        assert shown and "I don't know" not in shown, command
    unknown = "\n".join(sandbox.run_line("/rollout wa-backend"))
    assert "I don't know `/rollout`" in unknown
    assert all(f"`{command}`" in unknown for command in listed)


# -- scripts ------------------------------------------------------------------------------------


def test_quit_ends_a_script_at_once_and_succeeds(tmp_path: Path) -> None:
    script = tmp_path / "quit.txt"
    script.write_text("traffic wa-backend\nquit\nset\nfault nope 1\n")
    result = sandbox_run("--script", str(script))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "ana@#incidents> quit"
    assert "use: set" not in result.stdout


def test_a_missing_script_is_one_line_on_stderr(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    result = sandbox_run("--script", str(missing))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"runback: cannot read the script {missing}: No such file or directory"
    ]
    assert result.stdout == ""


def test_a_failing_script_line_is_one_line_with_its_place(tmp_path: Path) -> None:
    script = tmp_path / "bad.txt"
    script.write_text("# a comment\nset wa-backend-00003 p95_ms=slow\ntraffic wa-backend\n")
    result = sandbox_run("--script", str(script))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == f"{script}:2: 'p95_ms=slow': p95_ms must be a number"
    assert "Traceback" not in result.stderr


# -- speed and background updates ---------------------------------------------------------------


class Console:
    """`python -m bot sandbox ARGS` with lines written to it one at a time, output read as it
    comes (a thread collects it, so waiting never blocks on a pipe)."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "sandbox", *args],
            cwd=REPO,
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, text: str, after: int = 0, timeout_s: float = 45.0) -> int:
        """Index of the first output line from ``after`` on that contains ``text``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for index in range(after, len(self.lines)):
                if text in self.lines[index]:
                    return index
            if self.process.poll() is not None and not any(text in x for x in self.lines[after:]):
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not shown; output:\n" + "\n".join(self.lines))

    def quit(self) -> int:
        self.send("quit")
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def test_sandbox_speed_runs_a_release_on_and_shows_its_updates_without_another_line() -> None:
    """At `sandbox --speed 60` a release's one-minute warm-up and judgement take about a second,
    and the console shows the card moving to 50% and the judgement in its thread while it waits
    for input: no line is sent after /deploy. (At speed 1 the first judgement alone is over a
    minute away.)"""
    console = Console("--speed", "60")
    try:
        console.send("as marta")
        console.send(f"/deploy wa-backend {IMAGE}")
        console.wait_for("Release anyway (tech lead)")  # the fresh sandbox never drilled
        console.send("as luis")
        console.send("click Release anyway (tech lead)")
        at_10 = console.wait_for("Green has 10% of traffic")
        lines_sent_so_far = sum(1 for line in console.lines if PROMPT.match(line))
        at_50 = console.wait_for("Green has 50% of traffic", after=at_10)
        between = console.lines[at_10:at_50]
        assert any(line.startswith("── runback (#incidents, updated)") for line in between)
        console.wait_for("── runback (#incidents, in thread)", after=at_10)
        assert sum(1 for line in console.lines if PROMPT.match(line)) == lines_sent_so_far == 4
        assert console.quit() == 0
    finally:
        console.kill()


# -- the README's transcript is what the sandbox prints -----------------------------------------


def masked(line: str) -> str:
    """A transcript line without what differs from run to run: ids and measured durations."""
    line = re.sub(r"Operation `[0-9a-f]+`", "Operation `…`", line)
    return re.sub(r"\b\d+(\.\d+)?s\b", "…s", line)


def test_the_readme_transcript_is_what_the_sandbox_prints(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    marker = readme.index("<!-- tests/test_console.py runs these lines")
    block = readme[readme.index("```\n", marker) + 4 :]
    shown = block[: block.index("```")].splitlines()
    typed = [PROMPT.sub("", line) for line in shown if PROMPT.match(line)]
    assert len(typed) >= 2
    script = tmp_path / "readme.txt"
    script.write_text("\n".join(typed) + "\n", encoding="utf-8")
    result = sandbox_run("--script", str(script))
    assert result.returncode == 0, result.stdout + result.stderr
    printed = result.stdout.splitlines()
    assert [masked(line) for line in printed] == [masked(line) for line in shown], (
        "update the README's transcript to:\n" + result.stdout
    )
