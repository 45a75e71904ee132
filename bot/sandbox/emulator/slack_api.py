"""The Slack Web API, as slack_sdk's WebClient calls it, for the sandbox and the tests.

Clients use ``base_url=f"{emulator.url}/api/"``. Every method answers like Slack: HTTP 200 with
``{"ok": false, "error": ...}`` for API errors, and every ``blocks`` array and every view is run
through slack_sdk's own Block Kit models, so the bot's rendering bugs fail the tests the way they
would fail in a real workspace. Router api names are ``slack.<method>``
(``slack.chat.postMessage``), ``slack.files.upload`` for upload URLs and ``slack.response_url``
for response URLs; injected faults answer like Slack does (429 ``ratelimited`` with
``Retry-After: 1``, or the fault's message when it is a number of seconds; 5xx
``fatal_error``).

Like a real workspace: the bot posts, edits and reads history only in channels it is a member
of (``not_in_channel`` otherwise; ``add_channel(..., members=[BOT_USER_ID])`` or ``invite``);
``chat.update`` and ``conversations.*`` take channel ids only (names: ``channel_not_found``);
on a free plan (``set_plan("free")``) user groups answer ``paid_teams_only``; messages keep
their ``metadata``, which ``conversations.history`` returns with ``include_all_metadata``.
"""

from __future__ import annotations

import copy
import json
import mimetypes
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.sandbox.emulator.http import (
    HttpError,
    Request,
    RequestLog,
    Response,
    Router,
    json_response,
)
from bot.sandbox.emulator.socket_mode import SocketModeEmulator

BOT_USER_ID = "U0RUNBACK"
BOT_ID = "B0RUNBACK"
APP_ID = "A0RUNBACK"
TEAM_ID = "T0SANDBOX"
TEAM_NAME = "Runback sandbox"
BOT_NAME = "runback"

MAX_TEXT_CHARS = 40_000
MAX_MESSAGE_BLOCKS = 50
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL_S = 30 * 60
FIRST_TS_SECONDS = 1_764_270_000

Args = dict[str, Any]
Method = Callable[[Args], Args]


# What usergroups.list answers on a plan without user groups.
PLAN_ERRORS = ("paid_teams_only", "plan_upgrade_required")


class SlackError(Exception):
    """An ``{"ok": false}`` answer; HTTP 200 for Web API methods, like Slack."""

    def __init__(self, error: str, messages: list[str] | None = None, status: int = 200) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages or []
        self.status = status

    def response(self) -> Response:
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.messages:
            body["response_metadata"] = {"messages": self.messages}
        return json_response(body, self.status)


def slack_error(status: int, message: str) -> Response:
    """Error format for injected faults: what Slack's edge answers with."""
    if status == 429:
        response = json_response({"ok": False, "error": "ratelimited"}, 429)
        response.headers["Retry-After"] = message if message.isdigit() else "1"
        return response
    if status >= 500:
        return json_response({"ok": False, "error": "fatal_error"}, status)
    return json_response({"ok": False, "error": message}, status)


# -- Block Kit validation (slack_sdk models plus the few rules they do not check) -------------


def _load_json(value: Any, error: str) -> Any:
    """Form posts carry JSON arguments as strings; JSON bodies carry them as values."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError as exc:
        raise SlackError(error, [f"[ERROR] not valid JSON: {exc}"]) from exc


def _is_empty(value: Any) -> bool:
    return value is None or (hasattr(value, "__len__") and len(value) == 0)


def _compare(raw: Any, rendered: Any, where: str) -> list[str]:
    """What slack_sdk silently dropped: unknown nested types and unknown properties."""
    if rendered is None and raw is not None:
        kind = raw.get("type") if isinstance(raw, dict) else type(raw).__name__
        return [f"[ERROR] unsupported type {kind!r} [json-pointer:{where}]"]
    if isinstance(raw, dict) and isinstance(rendered, dict):
        problems: list[str] = []
        for key, value in raw.items():
            if key in rendered:
                problems += _compare(value, rendered[key], f"{where}/{key}")
            elif not _is_empty(value):
                problems.append(
                    f"[ERROR] invalid additional property: {key} [json-pointer:{where}]"
                )
        return problems
    if isinstance(raw, list) and isinstance(rendered, list) and len(raw) == len(rendered):
        return [
            p
            for i, pair in enumerate(zip(raw, rendered, strict=True))
            for p in _compare(*pair, f"{where}/{i}")
        ]
    return []


def _extra_rules(block: dict[str, Any], where: str) -> list[str]:
    """Slack rules that slack_sdk's models do not enforce."""
    kind = block.get("type")
    text = block.get("text")
    if kind == "header" and isinstance(text, dict) and text.get("type") != "plain_text":
        return [f"[ERROR] must be a plain_text object [json-pointer:{where}/text]"]
    if kind in ("actions", "context") and not block.get("elements"):
        return [f"[ERROR] must provide at least 1 element [json-pointer:{where}/elements]"]
    return []


def check_block(raw: Any, where: str) -> list[str]:
    """Problems with one block, as Slack-style ``[ERROR] ... [json-pointer:...]`` lines."""
    if not isinstance(raw, dict):
        return [f"[ERROR] must be an object [json-pointer:{where}]"]
    try:
        block = Block.parse(raw)
        if block is None:
            return [f"[ERROR] unknown block type {raw.get('type')!r} [json-pointer:{where}]"]
        rendered = block.to_dict()
    except Exception as exc:  # the models raise TypeError/KeyError/SlackObjectFormationError
        return [f"[ERROR] {type(exc).__name__}: {exc} [json-pointer:{where}]"]
    return _extra_rules(raw, where) + _compare(raw, rendered, where)


def check_blocks(raw: Any, where: str = "/blocks", limit: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    if not isinstance(raw, list):
        return [f"[ERROR] must be an array [json-pointer:{where}]"]
    problems = [f"[ERROR] no more than {limit} items allowed [json-pointer:{where}]"]
    if len(raw) <= limit:
        problems = []
    for i, block in enumerate(raw):
        problems += check_block(block, f"{where}/{i}")
    return problems


def check_view(raw: Any) -> list[str]:
    if not isinstance(raw, dict):
        return ["[ERROR] must be an object [json-pointer:/view]"]
    problems = check_blocks(raw.get("blocks") or [], "/view/blocks", limit=100)
    if raw.get("type") == "modal" and not raw.get("title"):
        problems.append("[ERROR] missing required field: title [json-pointer:/view]")
    blocks = raw.get("blocks") or []
    has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
    if raw.get("type") == "modal" and has_input and not raw.get("submit"):
        problems.append(
            "[ERROR] must provide a submit property when an input block is present "
            "[json-pointer:/view]"
        )
    try:
        rendered = View(**raw).to_dict()
    except Exception as exc:
        return [*problems, f"[ERROR] {type(exc).__name__}: {exc} [json-pointer:/view]"]
    top = {k: v for k, v in raw.items() if k != "blocks"}
    return problems + _compare(top, {k: v for k, v in rendered.items() if k != "blocks"}, "/view")


# -- request plumbing --------------------------------------------------------------------------


def _parse_args(request: Request) -> Args:
    args: Args = {k: v[0] for k, v in request.query.items()}
    content_type = request.headers.get("content-type", "")
    if not request.body:
        return args
    if "json" in content_type:
        body = _load_json(request.body.decode("utf-8", errors="replace"), "invalid_json")
        if not isinstance(body, dict):
            raise SlackError("invalid_json", ["[ERROR] the JSON body must be an object"])
        args.update(body)
    elif "x-www-form-urlencoded" in content_type:
        form = parse_qs(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)
        args.update({k: v[0] for k, v in form.items()})
    else:
        raise SlackError(
            "invalid_form_data", [f"[ERROR] unsupported content type {content_type!r}"]
        )
    return args


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _required(args: Args, *names: str) -> None:
    missing = [name for name in names if _is_empty(args.get(name))]
    if missing:
        raise SlackError(
            "invalid_arguments", [f"[ERROR] missing required field: {name}" for name in missing]
        )


# "Triggers expire in three seconds", and each is exchanged once:
# https://docs.slack.dev/interactivity/handling-user-interaction (trigger_id), and the errors of
# https://docs.slack.dev/reference/methods/views.open (expired_/exchanged_/invalid_trigger_id).
TRIGGER_TTL_S = 3.0


@dataclass
class _Trigger:
    user: str
    created: float
    used: bool = False


@dataclass
class _ResponseUrl:
    channel: str
    user: str
    message_ts: str | None
    created: float
    uses: int = 0


class SlackEmulator:
    """Users, channels, user groups, messages, views and files of one sandbox workspace."""

    def __init__(
        self,
        token: str = "xoxb-sandbox",
        clock: Callable[[], float] = time.time,
        app_token: str = "xapp-1-sandbox",
    ) -> None:
        self.token = token
        self.socket_mode = SocketModeEmulator(app_token, APP_ID, RequestLog())
        self.base_url = ""
        self._clock = clock
        self._lock = threading.RLock()
        self._seq = 0
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, dict[str, Any]] = {}
        self._messages: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._file_bytes: dict[str, bytes] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._triggers: dict[str, _Trigger] = {}
        self.plan = "standard"  # "free": user groups are a paid feature
        self.plan_error = "paid_teams_only"  # what usergroups.list answers on a free plan
        self.add_user(BOT_USER_ID, BOT_NAME, "Runback", is_bot=True)

    # -- seeding and reading (Python API) -----------------------------------------------------

    def add_user(
        self, id: str, name: str, real_name: str = "", locale: str = "en-US", is_bot: bool = False
    ) -> dict[str, Any]:
        user = {
            "id": id,
            "name": name,
            "real_name": real_name or name,
            "locale": locale,
            "is_bot": is_bot,
        }
        with self._lock:
            self._users[id] = user
        return dict(user)

    def add_channel(self, id: str, name: str, members: list[str] | None = None) -> dict[str, Any]:
        """A channel; the bot is in it only if ``members`` names it (or after ``invite``)."""
        channel = {
            "id": id,
            "name": name.lstrip("#"),
            "is_im": False,
            "user": None,
            "created": int(self._clock()),
            "members": list(members or []),
        }
        with self._lock:
            self._channels[id] = channel
        return copy.deepcopy(channel)

    def invite(self, channel: str, user: str = BOT_USER_ID) -> None:
        """``/invite @Runback`` in a channel."""
        with self._lock:
            members = self._channels[self._channel_id(channel)]["members"]
            if user not in members:
                members.append(user)

    def kick(self, channel: str, user: str = BOT_USER_ID) -> None:
        with self._lock:
            members = self._channels[self._channel_id(channel)]["members"]
            if user in members:
                members.remove(user)

    def set_plan(self, plan: str, error: str = "paid_teams_only") -> None:
        """``free`` or ``standard``: free workspaces have no user groups; ``error`` is what
        ``usergroups.list`` answers there: ``paid_teams_only`` (grafana/oncall#4793) or, as
        Slack documents it too, ``plan_upgrade_required``."""
        if error not in PLAN_ERRORS:
            raise ValueError(f"error is one of {', '.join(PLAN_ERRORS)}")
        with self._lock:
            self.plan = plan
            self.plan_error = error

    def add_usergroup(self, id: str, handle: str, user_ids: list[str]) -> dict[str, Any]:
        group = {
            "id": id,
            "handle": handle.lstrip("@"),
            "name": handle.lstrip("@"),
            "users": list(user_ids),
        }
        with self._lock:
            self._usergroups[id] = group
        return copy.deepcopy(group)

    def add_message(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A message written by a person (for cant_update_message and thread tests)."""
        with self._lock:
            channel_id = self._channel_id(channel)
            root = self._thread_root(channel_id, thread_ts)
            message = self._store(
                channel_id, {"text": text, "blocks": blocks or []}, root, source="seed", user=user
            )
            return copy.deepcopy(message)

    def messages(
        self,
        channel: str | None = None,
        include_ephemeral: bool = True,
        thread_ts: str | None = None,
        with_history: bool = True,
    ) -> list[dict[str, Any]]:
        """Messages in post order; ``thread_ts`` keeps a thread's root and replies;
        ``with_history=False`` leaves out each message's earlier versions (cheaper to copy)."""
        with self._lock:
            channel_id = self._find_channel(channel) if channel else None
            if channel and channel_id is None:
                return []
            found = [
                m
                for m in self._messages
                if (channel_id is None or m["channel"] == channel_id)
                and (include_ephemeral or m["ephemeral_to"] is None)
                and (thread_ts is None or thread_ts in (m["ts"], m["thread_ts"]))
            ]
            if not with_history:
                found = [{k: v for k, v in m.items() if k != "history"} for m in found]
            return copy.deepcopy(found)

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            channel_id = self._find_channel(channel)
            found = self._find_message(channel_id, ts, ephemeral=True) if channel_id else None
            return copy.deepcopy(found)

    def issue_trigger_id(self, user_id: str, issued_at: float | None = None) -> str:
        """A trigger_id as Slack puts in a slash command or interaction payload, for ``user_id``:
        views.open accepts it once, within TRIGGER_TTL_S of ``issued_at`` (default now)."""
        with self._lock:
            self._seq += 1
            created = self._clock() if issued_at is None else issued_at
            trigger_id = f"{int(created)}.{self._seq}.{secrets.token_hex(16)}"
            self._triggers[trigger_id] = _Trigger(user_id, created)
            return trigger_id

    def views(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._views.values()))

    def files(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._files.values()))

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            return self._file_bytes[file_id]

    def reset_messages(self) -> None:
        with self._lock:
            self._messages.clear()

    def new_response_url(self, channel: str, user: str, message_ts: str | None = None) -> str:
        """A response_url like the one in a slash command or interaction payload."""
        with self._lock:
            channel_id = self._find_channel(channel)
            if channel_id is None:
                raise ValueError(f"unknown Slack channel {channel!r}")
            key = secrets.token_urlsafe(12)
            self._response_urls[key] = _ResponseUrl(channel_id, user, message_ts, self._clock())
        return f"{self.base_url}/_slack/response/{key}"

    # -- wiring ------------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        self.socket_mode.calls = router.calls
        for verb in ("GET", "POST"):
            router.add(
                verb,
                r"/api/apps\.connections\.open",
                "slack.apps.connections.open",
                self._apps_connections_open,
                slack_error,
            )
        for name, method in self._methods().items():
            for verb in ("GET", "POST"):  # Slack takes both; slack_sdk always POSTs
                router.add(
                    verb, f"/api/{re.escape(name)}", f"slack.{name}", self._api(method), slack_error
                )
        for verb in ("GET", "POST"):
            router.add(
                verb,
                r"/api/(?P<method>[^/]+)",
                "slack.unknown_method",
                self._unknown_method,
                slack_error,
            )
        router.add(
            "POST",
            r"/_slack/upload/(?P<file_id>F\w+)",
            "slack.files.upload",
            self._upload,
            slack_error,
        )
        router.add(
            "GET",
            r"/_slack/files/(?P<file_id>F\w+)/(?P<name>[^/]+)",
            "slack.files.download",
            self._download,
            slack_error,
        )
        router.add(
            "POST",
            r"/_slack/response/(?P<key>[\w-]+)",
            "slack.response_url",
            self._response_url,
            slack_error,
        )
        self._register_control(router)

    def _methods(self) -> dict[str, Method]:
        return {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.getPermalink": self._chat_get_permalink,
            "users.info": self._users_info,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }

    def _api(self, method: Method) -> Callable[[Request], Response]:
        def handle(request: Request) -> Response:
            self.base_url = self.base_url or request.base_url
            try:
                args = _parse_args(request)
                self._authorize(request, args)
                with self._lock:
                    result = method(args)
            except SlackError as error:
                return error.response()
            return json_response({"ok": True, **result})

        return handle

    def _authorize(self, request: Request, args: Args) -> None:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        token = token or str(args.pop("token", "") or "")
        if not token:
            raise SlackError("not_authed")
        if not secrets.compare_digest(token, self.token):
            raise SlackError("invalid_auth")

    def _apps_connections_open(self, request: Request) -> Response:
        """Takes the app-level token only (Socket Mode); see socket_mode.py."""
        try:
            args = _parse_args(request)
            header = request.headers.get("authorization", "")
            token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            token = token or str(args.pop("token", "") or "")
            if not token:
                raise SlackError("not_authed")
            if not token.startswith("xapp-"):
                raise SlackError("not_allowed_token_type")
            if not secrets.compare_digest(token, self.socket_mode.app_token):
                raise SlackError("invalid_auth")
        except SlackError as error:
            return error.response()
        host = request.base_url.removeprefix("http://").rsplit(":", 1)[0]
        return json_response({"ok": True, "url": self.socket_mode.open_url(host)})

    def _unknown_method(self, request: Request) -> Response:
        return json_response(
            {"ok": False, "error": "unknown_method", "req_method": request.params.get("method", "")}
        )

    # -- lookups (callers hold the lock) ------------------------------------------------------

    def _find_channel(self, value: str | None) -> str | None:
        """A channel id from an id, "#name", "name", or a user id (the app's DM with them)."""
        value = (value or "").strip()
        if value in self._channels:
            return value
        name = value.lstrip("#")
        for channel in self._channels.values():
            if channel["name"] == name and not channel["is_im"]:
                return str(channel["id"])
        if value in self._users:
            return self._dm_channel(value)
        return None

    def _dm_channel(self, user_id: str) -> str:
        channel_id = "D" + user_id[1:]
        if channel_id not in self._channels:
            self._channels[channel_id] = {
                "id": channel_id,
                "name": user_id,
                "is_im": True,
                "user": user_id,
                "created": int(self._clock()),
                "members": [user_id, BOT_USER_ID],
            }
        return channel_id

    def _channel_id(self, value: Any) -> str:
        channel_id = self._find_channel(str(value or ""))
        if channel_id is None:
            raise SlackError("channel_not_found")
        return channel_id

    def _channel_by_id(self, value: Any) -> str:
        """Newer methods take ids only: a name is ``channel_not_found``.
        https://github.com/slackapi/python-slack-sdk/issues/1495"""
        if str(value or "") not in self._channels:
            raise SlackError("channel_not_found")
        return str(value)

    def _bot_channel(self, channel_id: str) -> str:
        """The bot acts only where it is a member: https://api.slack.com/methods/chat.postMessage#errors"""
        if BOT_USER_ID not in self._channels[channel_id]["members"]:
            raise SlackError("not_in_channel")
        return channel_id

    def _user(self, user_id: Any) -> dict[str, Any]:
        user = self._users.get(str(user_id or ""))
        if user is None:
            raise SlackError("user_not_found")
        return user

    def _find_message(
        self, channel: str, ts: str, ephemeral: bool = False
    ) -> dict[str, Any] | None:
        for message in self._messages:
            same = message["channel"] == channel and message["ts"] == ts
            if same and (ephemeral or message["ephemeral_to"] is None):
                return message
        return None

    def _thread_root(self, channel: str, thread_ts: Any) -> str | None:
        if _is_empty(thread_ts):
            return None
        parent = self._find_message(channel, str(thread_ts))
        if parent is None:
            raise SlackError("thread_not_found", [f"[ERROR] no message {thread_ts} in {channel}"])
        return str(parent["thread_ts"] or parent["ts"])

    # -- messages ----------------------------------------------------------------------------

    def _next_ts(self) -> str:
        self._seq += 1
        micros = self._seq * 100
        return f"{FIRST_TS_SECONDS + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _content(self, args: Args) -> Args:
        """The text/blocks/attachments given, validated the way Slack validates them."""
        content: Args = {}
        if "text" in args and args["text"] is not None:
            content["text"] = str(args["text"])
        if "blocks" in args and args["blocks"] is not None:
            blocks = _load_json(args["blocks"], "invalid_blocks_format")
            problems = check_blocks(blocks)
            if problems:
                raise SlackError("invalid_blocks", problems)
            content["blocks"] = blocks
        if "attachments" in args and args["attachments"] is not None:
            attachments = _load_json(args["attachments"], "invalid_attachments")
            if not isinstance(attachments, list):
                raise SlackError("invalid_attachments")
            content["attachments"] = attachments
        if not any(content.get(key) for key in ("text", "blocks", "attachments")):
            raise SlackError("no_text")
        if len(content.get("text", "")) > MAX_TEXT_CHARS:
            raise SlackError("msg_too_long")
        return content

    def _store(
        self,
        channel: str,
        content: Args,
        thread_ts: str | None,
        source: str,
        user: str = BOT_USER_ID,
        ephemeral_to: str | None = None,
        files: list[dict[str, Any]] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        message = {
            "channel": channel,
            "ts": self._next_ts(),
            "thread_ts": thread_ts,
            "text": content.get("text", ""),
            "blocks": content.get("blocks", []),
            "attachments": content.get("attachments", []),
            "user": user,
            "bot_id": BOT_ID if user == BOT_USER_ID else None,
            "ephemeral_to": ephemeral_to,
            "source": source,
            "version": 1,
            "history": [],
            "files": files or [],
            "metadata": metadata,
        }
        self._messages.append(message)
        return message

    def _replace(self, message: dict[str, Any], content: Args) -> None:
        """Edit in place: keep the previous version, bump the version."""
        previous = {k: copy.deepcopy(v) for k, v in message.items() if k != "history"}
        message["history"].append(previous)
        message["version"] += 1
        for key in ("text", "blocks", "attachments"):
            if key in content:
                message[key] = content[key]

    @staticmethod
    def _wire(message: dict[str, Any], with_metadata: bool = False) -> dict[str, Any]:
        wire = {
            "type": "message",
            "text": message["text"],
            "user": message["user"],
            "ts": message["ts"],
            "team": TEAM_ID,
            "blocks": message["blocks"],
        }
        if message["bot_id"]:
            wire.update(bot_id=message["bot_id"], app_id=APP_ID)
        if message["thread_ts"]:
            wire["thread_ts"] = message["thread_ts"]
        if message["attachments"]:
            wire["attachments"] = message["attachments"]
        if message["files"]:
            wire["files"] = message["files"]
        if with_metadata and message.get("metadata"):
            wire["metadata"] = message["metadata"]
        return wire

    # -- Web API methods (called with the lock held) -------------------------------------------

    def _auth_test(self, args: Args) -> Args:
        return {
            "url": f"{self.base_url}/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: Args) -> Args:
        channel = self._bot_channel(self._channel_id(args.get("channel")))
        thread_ts = self._thread_root(channel, args.get("thread_ts"))
        content = self._content(args)
        metadata = self._metadata(args.get("metadata"))
        message = self._store(channel, content, thread_ts, "chat.postMessage", metadata=metadata)
        return {"channel": channel, "ts": message["ts"], "message": self._wire(message)}

    @staticmethod
    def _metadata(raw: Any) -> dict[str, Any] | None:
        """https://api.slack.com/metadata/using: an event_type and an event_payload object."""
        if _is_empty(raw):
            return None
        metadata = _load_json(raw, "invalid_metadata_format")
        if not isinstance(metadata, dict) or not isinstance(metadata.get("event_type"), str):
            raise SlackError("invalid_metadata_format")
        if not isinstance(metadata.get("event_payload", {}), dict):
            raise SlackError("invalid_metadata_format")
        return {
            "event_type": metadata["event_type"],
            "event_payload": metadata.get("event_payload", {}),
        }

    def _conversations_history(self, args: Args) -> Args:
        """Newest first, top-level messages only (replies live in conversations.replies)."""
        channel = self._bot_channel(self._channel_by_id(args.get("channel")))
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        limit = min(int(args.get("limit") or 100), 999)
        metadata = _truthy(args.get("include_all_metadata"))
        found = [
            m
            for m in reversed(self._messages)
            if m["channel"] == channel
            and m["ephemeral_to"] is None
            and m["thread_ts"] in (None, m["ts"])
            and oldest < float(m["ts"]) < latest
        ]
        return {
            "messages": [self._wire(m, metadata) for m in found[:limit]],
            "has_more": len(found) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _chat_post_ephemeral(self, args: Args) -> Args:
        channel = self._bot_channel(self._channel_id(args.get("channel")))
        user = self._user(args.get("user"))["id"]
        thread_ts = self._thread_root(channel, args.get("thread_ts"))
        message = self._store(
            channel, self._content(args), thread_ts, "chat.postEphemeral", ephemeral_to=user
        )
        return {"message_ts": message["ts"]}

    def _chat_update(self, args: Args) -> Args:
        channel = self._bot_channel(self._channel_by_id(args.get("channel")))
        message = self._find_message(channel, str(args.get("ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        if message["user"] != BOT_USER_ID:
            raise SlackError("cant_update_message")
        self._replace(message, self._content(args))
        return {
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": self._wire(message),
        }

    def _chat_get_permalink(self, args: Args) -> Args:
        channel = self._channel_id(args.get("channel"))
        message = self._find_message(channel, str(args.get("message_ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        link = f"{self.base_url}/archives/{channel}/p{message['ts'].replace('.', '')}"
        if message["thread_ts"] and message["thread_ts"] != message["ts"]:
            link += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _users_info(self, args: Args) -> Args:
        user = self._user(args.get("user"))
        info = {
            "id": user["id"],
            "team_id": TEAM_ID,
            "name": user["name"],
            "deleted": False,
            "real_name": user["real_name"],
            "is_bot": user["is_bot"],
            "is_admin": False,
            "tz": "UTC",
            "tz_offset": 0,
            "profile": {
                "real_name": user["real_name"],
                "display_name": user["name"],
                "real_name_normalized": user["real_name"],
            },
        }
        if user["id"] == BOT_USER_ID:
            info["profile"]["bot_id"] = BOT_ID
        if _truthy(args.get("include_locale")):
            info["locale"] = user["locale"]
        return {"user": info}

    def _usergroup_wire(self, group: dict[str, Any], include_users: bool) -> dict[str, Any]:
        wire = {
            "id": group["id"],
            "team_id": TEAM_ID,
            "is_usergroup": True,
            "name": group["name"],
            "handle": group["handle"],
            "description": "",
            "date_delete": 0,
            "user_count": len(group["users"]),
        }
        if include_users:
            wire["users"] = list(group["users"])
        return wire

    def _free_plan_check(self) -> None:
        """User groups are a paid feature; a free workspace answers ``paid_teams_only``
        (seen from the real API: grafana/oncall#4793)."""
        if self.plan == "free":
            raise SlackError(self.plan_error)

    def _usergroups_list(self, args: Args) -> Args:
        self._free_plan_check()
        include_users = _truthy(args.get("include_users"))
        groups = [self._usergroup_wire(g, include_users) for g in self._usergroups.values()]
        return {"usergroups": groups}

    def _usergroups_users_list(self, args: Args) -> Args:
        self._free_plan_check()
        group = self._usergroups.get(str(args.get("usergroup") or ""))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    def _conversations_info(self, args: Args) -> Args:
        channel = self._channels[self._channel_by_id(args.get("channel"))]
        info = {
            "id": channel["id"],
            "name": channel["name"],
            "is_channel": not channel["is_im"],
            "is_group": False,
            "is_im": channel["is_im"],
            "is_private": False,
            "is_archived": False,
            "is_member": BOT_USER_ID in channel["members"],
            "created": channel["created"],
        }
        if channel["is_im"]:
            info["user"] = channel["user"]
        return {"channel": info}

    # -- views ---------------------------------------------------------------------------------

    def _view_arg(self, args: Args) -> dict[str, Any]:
        view = _load_json(args.get("view"), "invalid_arguments")
        problems = check_view(view)
        if problems:
            raise SlackError("invalid_arguments", problems)
        return dict(view)

    def _view_wire(self, record: dict[str, Any]) -> dict[str, Any]:
        return {
            **record["view"],
            "id": record["id"],
            "team_id": TEAM_ID,
            "state": {"values": {}},
            "hash": record["hash"],
            "root_view_id": record["id"],
            "previous_view_id": None,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "external_id": record["external_id"] or "",
        }

    def _exchange_trigger(self, trigger_id: Any) -> _Trigger:
        trigger = self._triggers.get(str(trigger_id))
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        if trigger.used:
            raise SlackError("exchanged_trigger_id")
        if self._clock() - trigger.created > TRIGGER_TTL_S:
            raise SlackError("expired_trigger_id")
        trigger.used = True
        return trigger

    def _views_open(self, args: Args) -> Args:
        if _is_empty(args.get("trigger_id")) and _is_empty(args.get("interactivity_pointer")):
            _required(args, "trigger_id")
        _required(args, "view")
        view = self._view_arg(args)
        external_id = view.get("external_id")
        if external_id and any(v["external_id"] == external_id for v in self._views.values()):
            raise SlackError("duplicate_external_id")
        pointer = args.get("trigger_id") or args.get("interactivity_pointer")
        trigger = self._exchange_trigger(pointer)
        self._seq += 1
        record: dict[str, Any] = {
            "id": f"V{self._seq:010d}",
            "user": trigger.user,
            "trigger_id": args.get("trigger_id"),
            "external_id": external_id,
            "hash": secrets.token_hex(8),
            "version": 1,
            "view": view,
            "history": [],
        }
        self._views[record["id"]] = record
        return {"view": self._view_wire(record)}

    def _views_update(self, args: Args) -> Args:
        _required(args, "view")
        record = self._find_view(args.get("view_id"), args.get("external_id"))
        if not _is_empty(args.get("hash")) and args["hash"] != record["hash"]:
            raise SlackError("hash_conflict")
        view = self._view_arg(args)
        record["history"].append(copy.deepcopy(record["view"]))
        record.update(view=view, hash=secrets.token_hex(8), version=record["version"] + 1)
        return {"view": self._view_wire(record)}

    def _find_view(self, view_id: Any, external_id: Any) -> dict[str, Any]:
        for record in self._views.values():
            if (view_id and record["id"] == view_id) or (
                external_id and record["external_id"] == external_id
            ):
                return record
        raise SlackError("not_found")

    # -- files (files_upload_v2: get URL, upload bytes, complete) ------------------------------

    def _files_get_upload_url(self, args: Args) -> Args:
        _required(args, "filename", "length")
        if not str(args["length"]).isdigit():
            raise SlackError("invalid_arguments", ["[ERROR] length must be an integer"])
        self._seq += 1
        file_id = f"F{self._seq:010d}"
        filename = str(args["filename"])
        self._files[file_id] = {
            "id": file_id,
            "name": filename,
            "title": filename,
            "mimetype": mimetypes.guess_type(filename)[0] or "application/octet-stream",
            "size": int(args["length"]),
            "alt_txt": args.get("alt_txt"),
            "snippet_type": args.get("snippet_type"),
            "user": BOT_USER_ID,
            "created": int(self._clock()),
            "uploaded": False,
            "channels": [],
            "content": "",
        }
        return {"upload_url": f"{self.base_url}/_slack/upload/{file_id}", "file_id": file_id}

    def _upload(self, request: Request) -> Response:
        with self._lock:
            record = self._files.get(request.params["file_id"])
            if record is None:
                raise HttpError(404, "no such upload")
            self._file_bytes[record["id"]] = request.body
            record.update(
                uploaded=True,
                size=len(request.body),
                content=request.body.decode("utf-8", errors="replace"),
            )
        return Response(200, f"OK - {len(request.body)}".encode(), "text/plain")

    def _download(self, request: Request) -> Response:
        """A file's ``url_private``, as Slack serves it: to a request that carries the token in
        an ``Authorization: Bearer`` header. Slack answers others with its sign-in page rather
        than the file (https://gist.github.com/ErikKalkoken/f3ab28617d5099531ded865d111dbac1,
        its comments); here that is a 403 with a short HTML page, and an unknown file a 404."""
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        with self._lock:
            record = self._files.get(request.params["file_id"])
            content = self._file_bytes.get(request.params["file_id"])
            if record is None or content is None or record["name"] != request.params["name"]:
                return Response(404, b"<html><body>Not found</body></html>", "text/html")
            if not token or not secrets.compare_digest(token, self.token):
                page = b"<html><body>Sign in to your workspace to see this file.</body></html>"
                return Response(403, page, "text/html")
            return Response(200, content, record["mimetype"])

    def _files_complete_upload(self, args: Args) -> Args:
        _required(args, "files")
        wanted = _load_json(args["files"], "invalid_arguments")
        if not isinstance(wanted, list) or not wanted:
            raise SlackError("invalid_arguments", ["[ERROR] files must be a non-empty array"])
        records = [self._uploaded_file(item) for item in wanted]
        channels = [self._bot_channel(c) for c in self._share_targets(args)]
        thread_ts = self._thread_root(channels[0], args.get("thread_ts")) if channels else None
        for record in records:
            record["channels"] += [c for c in channels if c not in record["channels"]]
        text = str(args.get("initial_comment") or "")
        for channel in channels:
            summaries = [self._file_wire(r) for r in records]
            self._store(channel, {"text": text}, thread_ts, "file", files=summaries)
        return {"files": [self._file_wire(r) for r in records]}

    def _uploaded_file(self, item: Any) -> dict[str, Any]:
        file_id = item.get("id") if isinstance(item, dict) else None
        record = self._files.get(str(file_id))
        if record is None or not record["uploaded"]:
            raise SlackError("file_not_found", [f"[ERROR] file {file_id} was not uploaded"])
        if item.get("title"):
            record["title"] = str(item["title"])
        return record

    def _share_targets(self, args: Args) -> list[str]:
        names = [args["channel_id"]] if not _is_empty(args.get("channel_id")) else []
        names += [c for c in str(args.get("channels") or "").split(",") if c]
        return [self._channel_by_id(name) for name in names]  # ids, like channel_id says

    def _file_wire(self, record: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "name", "title", "mimetype", "size", "user", "created", "channels")
        wire = {key: copy.deepcopy(record[key]) for key in keys}
        wire["url_private"] = f"{self.base_url}/_slack/files/{record['id']}/{record['name']}"
        return wire

    # -- response_url ------------------------------------------------------------------------

    def _response_url(self, request: Request) -> Response:
        try:
            with self._lock:
                target = self._live_response_url(request.params["key"])
                body = _load_json(
                    request.body.decode("utf-8", errors="replace") or "{}", "invalid_payload"
                )
                if not isinstance(body, dict):
                    raise SlackError("invalid_payload", status=400)
                self._respond(target, body)
                target.uses += 1
        except SlackError as error:
            if error.status == 200:
                error.status = 400
            return error.response()
        return json_response({"ok": True})

    def _live_response_url(self, key: str) -> _ResponseUrl:
        target = self._response_urls.get(key)
        if target is None:
            raise SlackError("invalid_url", status=404)
        if self._clock() - target.created > RESPONSE_URL_TTL_S:
            raise SlackError("expired_url", status=404)
        if target.uses >= RESPONSE_URL_USES:
            raise SlackError("used_up", status=404)
        return target

    def _respond(self, target: _ResponseUrl, body: Args) -> None:
        if _truthy(body.get("delete_original")):
            self._messages.remove(self._original(target))
            return
        content = self._content(body)
        if _truthy(body.get("replace_original")):
            self._replace(self._original(target), content)
            return
        thread_ts = self._thread_root(target.channel, body.get("thread_ts"))
        visible = body.get("response_type") == "in_channel"
        self._store(
            target.channel,
            content,
            thread_ts,
            "response_url",
            ephemeral_to=None if visible else target.user,
        )

    def _original(self, target: _ResponseUrl) -> dict[str, Any]:
        message = None
        if target.message_ts:
            message = self._find_message(target.channel, target.message_ts, ephemeral=True)
        if message is None:
            raise SlackError("message_not_found", status=404)
        return message

    # -- control API (/_emulator/slack/...) ----------------------------------------------------

    def _register_control(self, router: Router) -> None:
        base = "/_emulator/slack"
        routes: list[tuple[str, str, str, Callable[[Request], Response]]] = [
            ("GET", "/messages", "messages.list", self._ctl_messages),
            ("POST", "/messages", "messages.add", self._ctl_add_message),
            ("DELETE", "/messages", "messages.clear", self._ctl_clear_messages),
            ("POST", "/users", "users.add", self._ctl_add_user),
            ("POST", "/channels", "channels.add", self._ctl_add_channel),
            ("POST", "/members", "members.set", self._ctl_members),
            ("POST", "/plan", "plan.set", self._ctl_plan),
            ("POST", "/usergroups", "usergroups.add", self._ctl_add_usergroup),
            ("POST", "/response_urls", "response_urls.add", self._ctl_response_url),
            ("GET", "/views", "views.list", lambda r: json_response(self.views())),
            ("GET", "/files", "files.list", lambda r: json_response(self.files())),
            ("POST", "/triggers", "triggers.add", self._ctl_trigger),
        ]
        for verb, path, api, handler in routes:
            router.add(verb, base + path, f"_emulator.slack.{api}", handler)

    def _ctl_messages(self, request: Request) -> Response:
        include = request.arg("include_ephemeral", "1") not in ("0", "false")
        found = self.messages(
            request.arg("channel") or None,
            include_ephemeral=include,
            thread_ts=request.arg("thread_ts") or None,
        )
        return json_response(found)

    def _ctl_add_message(self, request: Request) -> Response:
        body = _control_body(request, "channel", "user", "text")
        try:
            message = self.add_message(
                body["channel"],
                body["user"],
                body["text"],
                body.get("thread_ts"),
                body.get("blocks"),
            )
        except SlackError as error:
            raise HttpError(400, error.error) from error
        return json_response(message)

    def _ctl_clear_messages(self, request: Request) -> Response:
        self.reset_messages()
        return json_response({})

    def _ctl_add_user(self, request: Request) -> Response:
        body = _control_body(request, "id", "name")
        return json_response(
            self.add_user(
                body["id"],
                body["name"],
                body.get("real_name", ""),
                body.get("locale", "en-US"),
                bool(body.get("is_bot", False)),
            )
        )

    def _ctl_add_channel(self, request: Request) -> Response:
        body = _control_body(request, "id", "name")
        members = body.get("members") or []
        if not isinstance(members, list):
            raise HttpError(400, "members must be a list of user ids")
        return json_response(self.add_channel(body["id"], body["name"], members))

    def _ctl_members(self, request: Request) -> Response:
        """``{"channel", "user" (default the bot), "member": true|false}``: invite or remove."""
        body = _control_body(request, "channel")
        user = str(body.get("user") or BOT_USER_ID)
        try:
            (self.invite if body.get("member", True) else self.kick)(body["channel"], user)
        except SlackError as error:
            raise HttpError(404, error.error) from error
        return json_response({"channel": body["channel"], "user": user})

    def _ctl_plan(self, request: Request) -> Response:
        body = _control_body(request, "plan")
        if body["plan"] not in ("free", "standard"):
            raise HttpError(400, "plan must be free or standard")
        try:
            self.set_plan(body["plan"], str(body.get("error") or "paid_teams_only"))
        except ValueError as error:
            raise HttpError(400, str(error)) from error
        return json_response({"plan": self.plan})

    def _ctl_add_usergroup(self, request: Request) -> Response:
        body = _control_body(request, "id", "handle")
        users = body.get("users", body.get("user_ids", []))
        return json_response(self.add_usergroup(body["id"], body["handle"], list(users)))

    def _ctl_trigger(self, request: Request) -> Response:
        body = _control_body(request, "user")
        return json_response({"trigger_id": self.issue_trigger_id(body["user"])})

    def _ctl_response_url(self, request: Request) -> Response:
        body = _control_body(request, "channel", "user")
        try:
            url = self.new_response_url(body["channel"], body["user"], body.get("message_ts"))
        except ValueError as error:
            raise HttpError(404, str(error)) from error
        return json_response({"url": url})


def _control_body(request: Request, *required: str) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError as error:
        raise HttpError(400, f"body is not JSON: {error}") from error
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    missing = [name for name in required if not body.get(name)]
    if missing:
        raise HttpError(400, f"missing field(s): {', '.join(missing)}")
    return body
