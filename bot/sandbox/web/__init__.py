"""The sandbox in the browser: the Slack emulator's workspace rendered as Slack shows it, with the
console's controls, served on 127.0.0.1 beside the console (or alone: ``--web-only``)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import TextIO

from bot.config import Config
from bot.sandbox.console import Sandbox
from bot.sandbox.web.server import WebPage

__all__ = ["WebPage", "run_web_only"]


def run_web_only(
    config: Config, speed: float = 1.0, port: int = 0, out: TextIO = sys.stdout
) -> int:
    """``python -m bot sandbox --web-only``: the sandbox and its page, no console, until Ctrl-C
    or SIGTERM."""
    sandbox = Sandbox(config, speed=speed)
    page = WebPage(sandbox)
    stop = threading.Event()
    try:
        page.start(port)
        print(f"Runback sandbox: the real bot on local emulators, at {page.url}", file=out)
        print("Open it in a browser; Ctrl-C stops it.", file=out, flush=True)
        with contextlib.suppress(ValueError):  # signals are for the main thread only
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(1.0):
                pass
        return 0
    finally:
        page.stop()
        sandbox.close()
