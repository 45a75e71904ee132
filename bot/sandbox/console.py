"""The sandbox console: the real bot, on the local emulators, driven from a terminal.

In the style of Hubot's shell: a line starting with ``/`` is a slash command sent as a signed
request by the current user in the current channel; ``click LABEL`` clicks a button; the bot's
messages come back rendered as text. See ``help`` for every line it understands.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import re
import secrets
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bot.clock import SandboxClock
from bot.config import Config
from bot.runtime import Runtime, Settings, build_runtime
from bot.sandbox.emulator.server import Emulator
from bot.sandbox.passing import pass_time
from bot.sandbox.seed import ALERT_KINDS, alert_payload, seed
from bot.sandbox.slack_payloads import (
    button_click,
    find_button,
    input_values,
    signed_headers,
    slash_command,
    view_submission,
)

log = logging.getLogger("runback.console")

BOT_TOKEN = "xoxb-sandbox-not-a-secret"
QUIT_WORDS = ("quit", "exit")
BEHAVIOUR_KEYS = {
    "healthz": "healthz_status",
    "error_rate": "error_rate",
    "p95_ms": "p95_ms",
    "rps": "rps",
}

HELP = """\
  /COMMAND ARGS          a slash command, e.g. /rollback wa-backend  (/ops help lists them)
  as NAME                act as another sandbox user ({users})
  in #CHANNEL            speak in another channel ({channels})
  click LABEL            click the button LABEL on the newest message that has one
  submit [k=v] [mysql] TEXT  submit the newest form opened for you, TEXT in its text box
                         (k=v fills another field, e.g. flag=FEATURE_FLAG_NEW_SCHEMA)
  set REVISION k=v ...   emulator behaviour: healthz=500 error_rate=0.07 p95_ms=2500 rps=50
                         (REVISION `new`: every revision created from now on)
  traffic SERVICE        the emulator's ground truth: revision, percent and feature flags
  fault API STATUS [N]   the next N calls of an emulator API fail: fault run.services.patch 503 2
  fault clear            no injected fault is left (those not yet used up are dropped)
  show FILE [PATH]       a file the bot posted (its name, or the start of it): text is printed,
                         anything else saved to PATH
  alert SERVICE [closed] [latency|uptime] [ID]  Cloud Monitoring's webhook: an error-rate alert
                         (or P95, uptime) opens (or closes), with the value Monitoring shows
  expect TEXT            fail (in scripts) unless TEXT appeared in the last output
  wait 5m                let sandbox time pass at once (30s, 5m, 1h): what falls due meanwhile
                         runs at its own time, in order (wait 9m = nine wait 1m)
  help, quit"""
SET_USAGE = "use: set REVISION KEY=VALUE ... with KEY in " + ", ".join(BEHAVIOUR_KEYS)
NEW_REVISIONS = "new"  # `set new ...`: the behaviour of the revisions created from now on


class ConsoleError(Exception):
    """A console line that could not be carried out; a script stops on it."""


class ExpectationFailed(ConsoleError):
    """An ``expect`` line whose text was not in the last output: a run with one fails."""


@dataclass
class Sandbox:
    config: Config
    emulator: Emulator = field(init=False)
    runtime: Runtime = field(init=False)
    bot_url: str = field(init=False)
    user: str = ""
    channel: str = ""
    retry_deadline_s: float = 5.0
    database_url: str = ""
    speed: float = 1.0  # sandbox time runs this many times faster than real time
    scheduler: bool = True  # False: only `wait` and POST /tasks/tick advance due work

    def __post_init__(self) -> None:
        self.signing_secret = secrets.token_hex(16)
        self.alert_token = secrets.token_hex(16)
        self.clock = SandboxClock(self.speed)
        self.started_on = self.clock.now().date()  # `wait` names the date once it differs
        self.emulator = Emulator(slack_token=BOT_TOKEN, clock=self.clock.time).start()
        seed(self.emulator, self.config)
        self._tmp = tempfile.TemporaryDirectory(prefix="runback-sandbox-")
        env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": self.signing_secret,
            "DATABASE_URL": self.database_url or f"sqlite:///{Path(self._tmp.name) / 'runback.db'}",
            "RUNBACK_RETRY_DEADLINE_S": str(self.retry_deadline_s),
            "RUNBACK_ALERT_TOKEN": self.alert_token,
            "RUNBACK_TICK_TOKEN": self.alert_token,
            "RUNBACK_CI_TOKEN": self.alert_token,
            **self.emulator.env(),
        }
        self._settings = Settings.from_env(env)
        self.runtime = build_runtime(self.config, self._settings, clock=self.clock)
        self._start_bot_server()
        if self.scheduler:
            self.runtime.engine.start(tick_interval_s=self.tick_interval_s)
        self.users = {name: u.id for name, u in self.config.sandbox.users.items()}
        self.names = {uid: name for name, uid in self.users.items()}
        self.channels = {
            **self.config.sandbox.channels,
            self.config.channels.incidents.name: self.config.channels.incidents.id,
        }
        self.user = self.user or next(iter(self.users), "")
        self.channel = self.channel or self.config.channels.incidents.name
        self._seen: dict[str, int] = {}
        self.closed_views: set[str] = set()  # forms submitted without errors (Slack closes them)
        self.closed_alerts: set[str] = set()  # incident ids `alert ... closed` closed
        self._ack_lines: list[str] = []
        self.last_output: list[str] = []
        self.http = requests.Session()
        # Held while a line runs, so that background updates are never shown in its middle.
        self.busy = threading.Lock()
        # Called with (user id, channel id, body) for each answer a slash command's ack carries
        # (Slack shows it to that user only and never stores it; the web page shows it too).
        self.ack_listeners: list[Callable[[str, str, dict[str, Any]], None]] = []

    @property
    def prompt(self) -> str:
        return f"{self.user}@#{self.channel}> "

    def _start_bot_server(self) -> None:
        from waitress import create_server

        self._server = create_server(self.runtime.wsgi, host="127.0.0.1", port=0, threads=8)
        threading.Thread(target=self._serve, name="sandbox-bot", daemon=True).start()
        self.bot_url = f"http://127.0.0.1:{self._server.effective_port}/slack/events"

    @property
    def settle_s(self) -> float:
        """How long the bot must be quiet before a line's output is shown (app.yaml's
        ``sandbox.settle_s``)."""
        return self.config.sandbox.settle_s

    @property
    def tick_interval_s(self) -> float:
        """One sandbox second between scheduler ticks, whatever the speed (at least 20 ms)."""
        return max(1.0 / self.speed, 0.02)

    def restart_bot(self) -> None:
        """Drop the bot and start a new one on the same database and emulators, as after a
        crash: whatever it finds unfinished, it resumes (once the old leases run out)."""
        self.runtime.engine.shutdown(wait=False)
        self._stop_bot_server()
        self.runtime = build_runtime(self.config, self._settings, clock=self.clock)
        self._start_bot_server()
        self.runtime.engine.start(tick_interval_s=self.tick_interval_s)
        self.runtime.engine.tick()
        self.runtime.engine.wait_idle(timeout_s=30, settle_s=self.settle_s)

    def _stop_bot_server(self) -> None:
        """Close the socket and end waitress's worker threads (``close`` alone leaves them)."""
        self._server.close()
        self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=2)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closing the server ends run() with EBADF
            self._server.run()

    def close(self) -> None:
        self.runtime.engine.wait_idle(timeout_s=10, settle_s=self.settle_s)
        self.runtime.engine.shutdown(wait=True)
        self._stop_bot_server()
        self.http.close()
        self.emulator.stop()
        self.runtime.deps.store.close()
        self._tmp.cleanup()

    # -- lines --------------------------------------------------------------------------------

    def run_line(self, line: str) -> list[str]:
        line = line.strip()
        if not line or line.startswith("#"):
            return []
        if line.startswith("/"):
            opened = len(self.emulator.slack.views())
            self._slash(line)
            return self._collect() + self._opened_forms(opened)
        word, _, rest = line.partition(" ")
        handler = {
            "as": self._as,
            "in": self._in,
            "click": self.click,
            "submit": self._submit,
            "set": self._set,
            "traffic": self._traffic,
            "fault": self._fault,
            "expect": self._expect,
            "wait": self._wait,
            "alert": self._alert,
            "show": self._show,
            "help": self._help,
        }.get(word.lower())
        if handler is None:
            raise ConsoleError(f"unknown line {word!r}; type help")
        lines = handler(rest.strip())
        if word.lower() != "expect":
            self.last_output = lines
        return lines

    def _help(self, _: str) -> list[str]:
        return HELP.format(
            users=", ".join(self.users), channels=", ".join(f"#{c}" for c in self.channels)
        ).splitlines()

    def _as(self, name: str) -> list[str]:
        if name not in self.users:
            raise ConsoleError(f"no sandbox user {name!r}; known: {', '.join(self.users)}")
        self.user = name
        return [f"(you are now {name})"]

    def _in(self, channel: str) -> list[str]:
        channel = channel.lstrip("#")
        if channel not in self.channels:
            raise ConsoleError(f"no channel #{channel}; known: {', '.join(self.channels)}")
        self.channel = channel
        return [f"(you are now in #{channel})"]

    def _set(self, rest: str) -> list[str]:
        revision, *pairs = rest.split() or [""]
        if not pairs or "=" in revision:
            raise ConsoleError(SET_USAGE)
        changes: dict[str, Any] = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            if key not in BEHAVIOUR_KEYS or not value:
                raise ConsoleError(f"{pair!r}: {SET_USAGE}")
            try:
                changes[BEHAVIOUR_KEYS[key]] = float(value)
            except ValueError:
                raise ConsoleError(f"{pair!r}: {key} must be a number") from None
        try:
            if revision == NEW_REVISIONS:
                behaviour = self.emulator.cloudrun.new_revision_behaviour(**changes)
            else:
                revision = self.emulator.cloudrun.complete_revision(revision)
                behaviour = self.emulator.cloudrun.set_behaviour(revision, **changes)
        except (KeyError, ValueError) as error:
            raise ConsoleError(getattr(error, "message", str(error))) from None
        return [f"({revision}: {behaviour})"]

    def _traffic(self, service: str) -> list[str]:
        if not service:
            raise ConsoleError("use: traffic SERVICE")
        try:
            rows = self.emulator.cloudrun.traffic(service)
        except (KeyError, ValueError) as error:
            raise ConsoleError(getattr(error, "message", str(error))) from None
        return [
            f"{row['revision']} {row['percent']}%"
            + (f" (tag {row['tag']})" if row["tag"] else "")
            + self._flags_of(str(row["revision"]))
            for row in rows
        ]

    def _flags_of(self, revision: str) -> str:
        """`` · flags NEW_CHECKOUT=true ...``: the revision's FEATURE_FLAG_* as set."""
        try:
            flags = self.emulator.cloudrun.revision_flags(revision)
        except KeyError:
            return ""
        shown = " ".join(f"{name}={value}" for name, value in sorted(flags.items()))
        return f" · flags {shown}" if shown else ""

    def _fault(self, rest: str) -> list[str]:
        from bot.sandbox.emulator.http import Fault

        words = rest.split()
        if words == ["clear"]:
            left = len(self.emulator.router.faults.list())
            self.emulator.router.faults.clear()
            return [f"(no injected fault left; {left} cleared)"]
        usage = "use: fault API STATUS [TIMES], e.g. fault run.services.patch 503 2; or fault clear"
        if len(words) not in (2, 3) or not all(word.isdigit() for word in words[1:]):
            raise ConsoleError(usage)
        api, status = words[0], int(words[1])
        times = int(words[2]) if len(words) == 3 else 1
        if not 100 <= status <= 599 or times < 1:
            raise ConsoleError(usage)
        known = self.fault_apis()
        if api not in known:
            close = difflib.get_close_matches(api, known, n=1)
            families = sorted({name.split(".")[0] + ".*" for name in known})
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(families)}"
            raise ConsoleError(f"no emulator API {api!r}; {hint}")
        self.emulator.router.faults.add(Fault(api=api, status=status, times=times))
        return [f"(the next {times} call(s) of {api} answer {status})"]

    def fault_apis(self) -> list[str]:
        """Every API name a fault can be put on: the emulators' routes, and Monitoring's gRPC."""
        from bot.sandbox.emulator.monitoring import API as MONITORING_API

        routes = {r.api for r in self.emulator.router.routes if not r.api.startswith("_")}
        return sorted(routes | {MONITORING_API})

    def _expect(self, text: str) -> list[str]:
        wanted = text.strip().strip('"')
        if not any(wanted in line for line in self.last_output):
            raise ExpectationFailed(f"expected {wanted!r} in the last output")
        return []

    def _alert(self, rest: str) -> list[str]:
        words = rest.split()
        if not words:
            raise ConsoleError("use: alert SERVICE [closed] [latency|uptime] [ID]")
        service, state = words[0], "closed" if "closed" in words[1:] else "open"
        kind = next((w for w in words[1:] if w in ALERT_KINDS), "error_rate")
        ids = [w for w in words[1:] if w != "closed" and w not in ALERT_KINDS]
        incident_id = ids[0] if ids else self._alert_id(service)
        if state == "closed":  # Cloud Monitoring never reopens a closed incident: a new id next
            self.closed_alerts.add(incident_id)
        body = alert_payload(self.emulator, service, state, incident_id, kind)
        response = self.post_alert(body)
        if response.status_code != 200:
            raise ConsoleError(f"the bot answered HTTP {response.status_code}: {response.text}")
        return [f"(alert {incident_id} {state}: {response.json()['status']})", *self._collect()]

    def _alert_id(self, service: str) -> str:
        """The incident id of ``alert SERVICE``: the service's open one, or a new one once
        it was closed (``sandbox-wa-backend``, then ``sandbox-wa-backend-2``, ...)."""
        number = 1
        while (incident_id := f"sandbox-{service}" + (f"-{number}" if number > 1 else "")) in (
            self.closed_alerts
        ):
            number += 1
        return incident_id

    def post_alert(self, body: str, token: str | None = None) -> requests.Response:
        url = self.bot_url.replace("/slack/events", "/alerts/monitoring")
        return self.http.post(
            url,
            params={"token": token or self.alert_token},
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )

    def _wait(self, rest: str) -> list[str]:
        """Let sandbox time pass at once (``wait 5m``, ``wait 30s``): what falls due meanwhile
        runs at its own time, in order (bot/sandbox/passing.py)."""
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh]?)", rest.strip())
        if not match:
            raise ConsoleError("use: wait 30s | wait 5m | wait 1h")
        unit = {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]
        seconds = float(match.group(1)) * unit
        pass_time(self.clock, self.runtime.engine, seconds, self.settle_s)
        now = self.clock.now()
        shown = f"{now:%H:%M:%S}" if now.date() == self.started_on else f"{now:%Y-%m-%d %H:%M:%S}"
        return [f"(sandbox time is now {shown} UTC)", *self._collect()]

    # -- Slack requests -----------------------------------------------------------------------

    def post(self, body: str) -> requests.Response:
        """Send a signed request to the bot, as Slack would."""
        headers = signed_headers(self.signing_secret, body)
        return self.http.post(self.bot_url, data=body.encode(), headers=headers, timeout=10)

    def _post(self, body: str) -> requests.Response:
        response = self.post(body)
        if response.status_code != 200:
            raise ConsoleError(f"the bot answered HTTP {response.status_code}: {response.text}")
        return response

    def slash_body(self, line: str) -> str:
        command, _, text = line.partition(" ")
        user_id, channel_id = self.users[self.user], self.channels[self.channel]
        response_url = self.emulator.slack.new_response_url(channel_id, user_id)
        trigger_id = self.emulator.slack.issue_trigger_id(user_id)
        return slash_command(
            command,
            text.strip(),
            user_id,
            self.user,
            channel_id,
            self.channel,
            response_url,
            trigger_id,
        )

    def _slash(self, line: str) -> None:
        response = self._post(self.slash_body(line))
        if response.content:
            self._show_ack(json.loads(response.content))

    def _show_ack(self, body: dict[str, Any]) -> None:
        """An immediate answer in the ack is shown like Slack shows it: only to you."""
        self._ack_lines = [*render_message(body, self.names), "  (only visible to you)"]
        for listener in self.ack_listeners:
            listener(self.users[self.user], self.channels[self.channel], body)

    def click_body(self, label: str, ts: str | None = None) -> tuple[str, list[str]]:
        """The signed-to-be payload of clicking ``label`` (on the message ``ts`` when given),
        and what the confirm dialog says."""
        messages = self.emulator.slack.messages(with_history=False)
        if ts is not None:
            messages = [m for m in messages if m["ts"] == ts]
        found = find_button(messages, label.strip().strip('"'))
        if found is None:
            raise ConsoleError(f"no button labelled {label!r} on any message")
        message, button, block_id = found
        user_id = self.users[self.user]
        response_url = self.emulator.slack.new_response_url(
            message["channel"], user_id, message["ts"]
        )
        body = button_click(
            message, button, block_id, user_id, self.user, self.channel, response_url
        )
        confirm = button.get("confirm")
        lines = []
        if confirm:
            lines.append(
                f"({confirm['title']['text']} {plain(confirm['text']['text'], self.names)}"
                f" → {confirm['confirm']['text']})"
            )
        return body, lines

    def _opened_forms(self, before: int) -> list[str]:
        """A modal the bot opened is shown by its title; ``submit`` fills and sends it."""
        lines = []
        for record in self.emulator.slack.views()[before:]:
            title = record["view"].get("title", {}).get("text", "")
            lines.append(f"── form opened: {title} (type `submit TEXT` to send it) ──")
        self.last_output = self.last_output + lines
        return lines

    def open_form(self, view_id: str | None = None) -> dict[str, Any]:
        """The newest modal open for the current user (or the one ``view_id`` names), as
        Slack sends it back in a view_submission."""
        mine = [
            v
            for v in self.emulator.slack.views()
            if v.get("user") == self.users[self.user] and v["id"] not in self.closed_views
        ]
        views = [v for v in mine if view_id in (None, v["id"])]
        if not views:
            raise ConsoleError("no form is open for you; e.g. /ops migration-check opens one")
        record = views[-1]
        return {**record["view"], "id": record["id"], "hash": record["hash"]}

    def submit_body(self, text: str) -> str:
        """The signed-to-be view_submission of the newest modal opened for the current user,
        with ``text`` typed into its text input (``mysql`` first picks that option)."""
        view = self.open_form()
        return self.form_body(view, self._typed(view, text))

    def _typed(self, view: dict[str, Any], text: str) -> dict[str, str]:
        typed: dict[str, str] = {}
        fields = _input_ids(view)
        while (word := text.partition(" ")[0]).partition("=")[0] in fields - {"sql"}:
            typed[word.partition("=")[0]] = word.partition("=")[2]  # e.g. flag=FEATURE_FLAG_X
            text = text.partition(" ")[2]
        first, _, rest = text.partition(" ")
        if first in ("postgres", "mysql"):
            typed.update(dialect=first, sql=rest)
        else:
            typed["sql"] = text
        return typed

    def form_body(self, view: dict[str, Any], typed: dict[str, str]) -> str:
        """The signed-to-be view_submission of ``view``, ``typed`` (action_id -> value) in it."""
        user_id = self.users[self.user]
        values = input_values(view, typed)
        trigger_id = self.emulator.slack.issue_trigger_id(user_id)
        return view_submission(view, values, user_id, self.user, trigger_id)

    def submit_form(
        self, typed: dict[str, str], view_id: str | None = None
    ) -> tuple[dict[str, str], list[str]]:
        """Submit a form as Slack does: (the errors a ``response_action: errors`` answer puts
        beside its fields, by block id, the form staying open; what the bot posted)."""
        view = self.open_form(view_id)
        response = self._post(self.form_body(view, typed))
        answer = json.loads(response.content) if response.content else {}
        if answer.get("response_action") == "errors":  # the form stays open, errors beside
            return {str(k): str(v) for k, v in answer["errors"].items()}, []
        # Slack closes a modal whose submission is not answered with errors
        self.closed_views.add(view["id"])
        return {}, self._collect()

    def _submit(self, text: str) -> list[str]:
        view = self.open_form()
        errors, lines = self.submit_form(self._typed(view, text), view["id"])
        return [f"! {field}: {error}" for field, error in errors.items()] or lines

    def _show(self, rest: str) -> list[str]:
        """A file the bot posted, fetched as Slack serves it: its url_private, with the token."""
        name, _, path = rest.strip().partition(" ")
        if not name:
            raise ConsoleError("use: show FILE [PATH], e.g. show postmortem")
        found = [f for f in self.emulator.slack.files() if f["name"].startswith(name)]
        if not found:
            posted = sorted({f["name"] for f in self.emulator.slack.files()})
            known = ", ".join(posted) if posted else "none yet"
            raise ConsoleError(f"no posted file named {name!r}; posted: {known}")
        record = found[-1]  # the newest
        url = f"{self.emulator.slack.base_url}/_slack/files/{record['id']}/{record['name']}"
        response = self.http.get(url, headers={"Authorization": f"Bearer {BOT_TOKEN}"}, timeout=10)
        if response.status_code != 200:
            raise ConsoleError(f"Slack answered HTTP {response.status_code} for {record['name']}")
        if path:
            Path(path).write_bytes(response.content)
            return [f"({record['name']}: {len(response.content)} bytes saved to {path})"]
        if not record["mimetype"].startswith("text/") and not record["name"].endswith(".md"):
            kind = f"{record['mimetype']}, {len(response.content)} bytes"
            return [f"({record['name']} is {kind}: `show {name} PATH` saves it)"]
        return [f"── {record['name']} " + "─" * 20, *response.text.splitlines()]

    def click(self, label: str, ts: str | None = None) -> list[str]:
        """Click the button ``label`` (on the message ``ts`` when given) as the current user."""
        body, lines = self.click_body(label, ts)
        self._post(body)
        return lines + self._collect()

    # -- output -------------------------------------------------------------------------------

    def _collect(self) -> list[str]:
        self.runtime.engine.wait_idle(timeout_s=60, settle_s=self.settle_s)
        lines: list[str] = list(self._ack_lines)
        self._ack_lines = []
        lines.extend(self._new_messages())
        self.last_output = lines
        return lines

    def background_updates(self) -> list[str]:
        """What the bot posted or updated since the last line (call while holding ``busy``); it
        counts as output of that line for ``expect``."""
        lines = self._new_messages()
        self.last_output = self.last_output + lines
        return lines

    def _new_messages(self) -> list[str]:
        lines: list[str] = []
        me = self.users[self.user]
        for message in self.emulator.slack.changed_messages(self._seen):
            key = f"{message['channel']}:{message['ts']}"
            updated = key in self._seen
            self._seen[key] = message["version"]
            if message.get("ephemeral_to") not in (None, me):
                continue
            lines.extend(self._describe(message, updated))
        return lines

    def _describe(self, message: dict[str, Any], updated: bool) -> list[str]:
        channel = next(
            (n for n, i in self.channels.items() if i == message["channel"]), message["channel"]
        )
        tags = [f"#{channel}"]
        if message.get("thread_ts") not in (None, message["ts"]):
            tags.append("in thread")
        if updated:
            tags.append("updated")
        if message.get("ephemeral_to"):
            tags.append("only visible to you")
        head = f"── runback ({', '.join(tags)}) " + "─" * 20
        return [head, *render_message(message, self.names)]


def _input_ids(view: dict[str, Any]) -> set[str]:
    """The action ids of a form's inputs (what ``submit name=value`` may fill)."""
    return {
        str((block.get("element") or {}).get("action_id"))
        for block in view.get("blocks") or []
        if block.get("type") == "input"
    }


def plain(text: str, names: dict[str, str]) -> str:
    """Slack mrkdwn as a terminal shows it: mentions by name, dates by their fallback."""
    text = re.sub(r"<@(\w+)>", lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = re.sub(r"<!date\^\d+\^[^|>]*\|([^>]*)>", r"\1", text)
    text = re.sub(r"<(https?://[^|>]+)\|([^>]*)>", r"\2 (\1)", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_message(message: dict[str, Any], names: dict[str, str]) -> list[str]:
    blocks = message.get("blocks") or []
    files = [
        f"  📎 {f.get('title') or f.get('name')} ({f.get('name')})"
        for f in message.get("files") or []
    ]
    if not blocks:
        return [plain(message.get("text", ""), names), *files]
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"**{block['text']['text']}**")
        elif kind == "section":
            lines.extend(plain(block["text"]["text"], names).splitlines())
        elif kind == "context":
            lines.append(
                "  " + "  ".join(plain(e.get("text", ""), names) for e in block.get("elements", []))
            )
        elif kind == "divider":
            lines.append("  " + "·" * 30)
        elif kind == "actions":
            lines.append(
                "  "
                + "  ".join(
                    f"[{e['text']['text']}]" for e in block.get("elements", []) if "text" in e
                )
            )
    return lines + files


def describe_error(error: Exception) -> str:
    """One line for a line that failed; a traceback only in the debug log."""
    if isinstance(error, ConsoleError):
        return str(error)
    log.debug("console line failed", exc_info=error)
    return f"{type(error).__name__}: {error}"
