"""Running the sandbox console: a script (``--script``), lines piped in, or a terminal."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TextIO

from bot.config import Config
from bot.sandbox.console import QUIT_WORDS, ExpectationFailed, Sandbox, describe_error
from bot.sandbox.web import WebPage

log = logging.getLogger("runback.console")
BACKGROUND_POLL_S = 0.25


def run_console(
    config: Config,
    script: str | None = None,
    out: TextIO = sys.stdout,
    speed: float = 1.0,
    stdin: TextIO | None = None,
    web_port: int | None = None,
) -> int:
    """``web_port``: also serve the web page (bot.sandbox.web) there, or on any free port when
    it is taken; None: the console alone."""
    lines: list[str] | None = None
    if script:
        try:
            lines = Path(script).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            print(f"runback: cannot read the script {script}: {reason}", file=sys.stderr)
            return 2
    sandbox = Sandbox(config, speed=speed)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    page = None
    try:
        if lines is not None:
            return _run_script(sandbox, script or "", lines, out)
        if web_port is not None:
            page = WebPage(sandbox).start(web_port)
        return _interactive(sandbox, stdin or sys.stdin, out, page.url if page else "")
    except KeyboardInterrupt:  # Ctrl-C while a line runs: stop like Ctrl-D, no traceback
        print(file=out)
        return 130
    except SystemExit as stop:  # SIGTERM: the same orderly end (no temp folder left behind)
        return int(stop.code or 0)
    finally:
        if page is not None:
            page.stop()
        sandbox.close()
        signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def is_quit(line: str) -> bool:
    return line.strip().lower() in QUIT_WORDS


def _emit(out: TextIO, lines: list[str]) -> None:
    for line in lines:
        print(line, file=out)
    out.flush()


def _run_script(sandbox: Sandbox, name: str, lines: list[str], out: TextIO) -> int:
    for number, line in enumerate(lines, start=1):
        if line.strip() and not line.strip().startswith("#"):
            _emit(out, [sandbox.prompt + line.strip()])
        if is_quit(line):
            return 0
        try:
            _emit(out, sandbox.run_line(line))
        except Exception as error:
            _emit(out, [f"{name}:{number}: {describe_error(error)}"])
            return 1
    return 0


def _interactive(sandbox: Sandbox, stdin: TextIO, out: TextIO, page_url: str = "") -> int:
    """Lines from a terminal, or piped in. Piped lines are echoed after their prompt, so the
    output reads like a terminal session; what the bot does meanwhile is shown as it happens."""
    tty = stdin.isatty()
    if tty:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    intro = [
        "Runback sandbox: the real bot on local emulators. Type help; Ctrl-D quits.",
        "Sample: as ana · in #incidents · /rollback wa-backend · traffic wa-backend",
    ]
    if page_url:
        intro.append(f"The same sandbox as Slack shows it, in your browser: {page_url}")
    _emit(out, intro)
    watcher = BackgroundUpdates(sandbox, out, tty)
    watcher.start()
    unmet = False  # piped lines are a script too: an unmet `expect` fails the run, at the end
    try:
        while (line := _read_line(sandbox, stdin, tty)) is not None:
            with sandbox.busy:
                if not tty:
                    _emit(out, [sandbox.prompt + line])
                if is_quit(line):
                    break
                try:
                    _emit(out, sandbox.run_line(line))
                except Exception as error:  # keep the console alive; one line says what broke
                    unmet = unmet or isinstance(error, ExpectationFailed)
                    _emit(out, [f"! {describe_error(error)}"])
    finally:
        watcher.stop()
    return 1 if unmet and not tty else 0


def _read_line(sandbox: Sandbox, stdin: TextIO, tty: bool) -> str | None:
    """The next line without its newline; None at the end of input (or Ctrl-C, Ctrl-D)."""
    try:
        if tty:
            return input(sandbox.prompt)
        line = stdin.readline()
    except (EOFError, KeyboardInterrupt):
        print()
        return None
    return line.rstrip("\r\n") if line else None


class BackgroundUpdates:
    """Shows what the bot posts while the console waits for a line: a card a scheduler tick
    moved on, a thread reply, a judgement. On a terminal the prompt is drawn again after it."""

    def __init__(self, sandbox: Sandbox, out: TextIO, tty: bool) -> None:
        self.sandbox, self.out, self.tty = sandbox, out, tty
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-updates", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(BACKGROUND_POLL_S):
            try:
                self._show_new()
            except Exception:  # a sandbox being closed, say; the next line shows the state
                log.debug("background update failed", exc_info=True)

    def _show_new(self) -> None:
        # Only once the bot is quiet, so that a card is shown as it ends up, not mid-update.
        if not self.sandbox.runtime.engine.wait_idle(timeout_s=BACKGROUND_POLL_S):
            return
        with self.sandbox.busy:
            lines = self.sandbox.background_updates()
            if not lines:
                return
            if self.tty:
                self.out.write("\r\033[K")  # the prompt line the user may be typing on
            _emit(self.out, lines)
            if self.tty:
                self.out.write(self.sandbox.prompt + _typed_so_far())
                self.out.flush()


def _typed_so_far() -> str:
    readline = sys.modules.get("readline")
    return readline.get_line_buffer() if readline is not None else ""
