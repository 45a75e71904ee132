"""python -m bot [sandbox|serve|emulators|check-migration|doctor|db] — see README.md."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading

from bot.version import version

SANDBOX_WEB_PORT = 8470  # the sandbox's web page; when taken, any free port (its URL is printed)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # gRPC core logs INFO lines on shutdown
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"runback {version()}")
    parser.add_argument("--config", help="path to app.yaml (default $RUNBACK_CONFIG or app.yaml)")
    parser.add_argument(
        "--speed",
        type=speed,
        default=1.0,
        help=f"sandbox time runs N times faster (e.g. 60; above 0, at most {MAX_SPEED:g})",
    )
    sub = parser.add_subparsers(dest="command")
    sandbox = sub.add_parser("sandbox", help="the console on local emulators (the default)")
    sandbox.add_argument("--script", help="run console lines from FILE and exit")
    # SUPPRESS: not given here, `python -m bot --speed N sandbox` still sets it.
    sandbox.add_argument("--speed", type=speed, default=argparse.SUPPRESS, help="as above")
    sandbox.add_argument("--config", default=argparse.SUPPRESS, help="as above")
    sandbox.add_argument("--web-only", action="store_true", help="the web page, no console")
    sandbox.add_argument("--no-web", action="store_true", help="the console, no web page")
    sandbox.add_argument(
        "--web-port",
        type=int,
        default=SANDBOX_WEB_PORT,
        help="the web page's port on 127.0.0.1 (0: any)",
    )
    serve_parser = sub.add_parser("serve", help="production HTTP server on $PORT")
    serve_parser.add_argument(
        "--upgrade", action="store_true", help="upgrade an older database schema first"
    )
    emulators = sub.add_parser("emulators", help="the emulators alone")
    emulators.add_argument("--port", type=int, default=int(os.environ.get("EMULATOR_PORT", 8480)))
    check = sub.add_parser("check-migration", help="would old code survive this SQL migration?")
    check.add_argument("--dialect", choices=("postgres", "mysql"), default="postgres")
    check.add_argument("--format", choices=("text", "json"), default="text")
    check.add_argument("--locale", choices=("en", "es"), help="default: app.yaml's, else en")
    check.add_argument("files", nargs="+", metavar="FILE", help="SQL files; - reads stdin")
    sub.add_parser("doctor", help="check a real configuration without changing anything")
    db = sub.add_parser("db", help="Runback's own database schema ($DATABASE_URL)")
    db.add_argument("action", choices=("upgrade", "current"))
    args = parser.parse_args(argv)
    if args.command == "db":  # no app.yaml, no Slack: a deploy step
        from bot.startup import run_db_command

        return run_db_command(args.action, os.environ.get("DATABASE_URL") or "sqlite:///runback.db")
    if args.command == "check-migration":  # no app.yaml, no Slack, no Google: a CI step
        from bot.check_migration import run

        return run(args.files, args.dialect, args.format, args.locale)
    if args.command == "doctor":  # reports a bad app.yaml as one of its lines
        from bot import doctor

        return doctor.run(args.config)

    command = args.command or ("serve" if os.environ.get("SLACK_BOT_TOKEN") else "sandbox")
    if command == "sandbox":
        # The console shows what happens; a log line between its lines, stamped with the wall
        # clock while the sandbox runs on its own, says nothing more. Errors still show.
        logging.basicConfig(
            level=os.environ.get("LOG_LEVEL", "ERROR"), format="(log) %(levelname)s: %(message)s"
        )
    else:
        logging.basicConfig(
            level=os.environ.get("LOG_LEVEL", "WARNING"),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    if command == "serve":
        return serve(args.config, upgrade=getattr(args, "upgrade", False))
    from bot.config import ConfigError, load_config  # pydantic: after serve has branched off

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"runback: {error}", file=sys.stderr)
        return 2
    if command == "emulators":
        return run_emulators(config, args.port)
    if getattr(args, "web_only", False):
        from bot.sandbox.web import run_web_only

        return run_web_only(config, speed=args.speed, port=args.web_port)
    from bot.sandbox.console_run import run_console

    web_port = getattr(args, "web_port", SANDBOX_WEB_PORT)
    return run_console(
        config,
        script=getattr(args, "script", None),
        speed=args.speed,
        web_port=None if getattr(args, "no_web", False) else web_port,
    )


MAX_SPEED = 1000.0  # a 5-minute judgement window in 0.3 s: faster, the scheduler cannot keep up


def speed(text: str) -> float:
    """``--speed``: a finite number above 0 and at most MAX_SPEED."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= MAX_SPEED):  # also false for NaN
        raise argparse.ArgumentTypeError(
            f"{text!r}: use a number above 0 and at most {MAX_SPEED:g} (1 is real time)"
        )
    return value


def serve(config_path: str | None, upgrade: bool = False) -> int:
    from bot.serving import serve as listen_then_load  # listens before app.yaml is loaded

    return listen_then_load(config_path, upgrade=upgrade)


def run_emulators(config: object, port: int) -> int:
    from bot.sandbox.emulator.server import Emulator
    from bot.sandbox.seed import seed

    emulator = Emulator().start(port=port)
    seed(emulator, config)  # type: ignore[arg-type]
    for name, value in emulator.env().items():
        print(f"{name}={value}")
    print("# the one bot token the Slack emulator takes:")
    print(f"SLACK_BOT_TOKEN={emulator.slack.token}")
    print(f"# control API: {emulator.url}/_emulator/ (see docs/emulators.md)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    emulator.stop()
    return 0


def run() -> None:
    """The ``runback`` command (pyproject.toml's entry point)."""
    sys.exit(main())


if __name__ == "__main__":
    run()
