"""The Slack emulator's workspace: users, channels, user groups, messages, views and files, the
Python API that seeds and reads them, and the lookups and message store the Web API methods
share (slack_chat, slack_views, slack_files; slack_api.py wires them)."""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.sandbox.emulator.http import RequestLog
from bot.sandbox.emulator.slack_args import Args, SlackError, _is_empty, _load_json
from bot.sandbox.emulator.slack_blocks import check_blocks
from bot.sandbox.emulator.socket_mode import SocketModeEmulator

BOT_USER_ID = "U0RUNBACK"
BOT_ID = "B0RUNBACK"
APP_ID = "A0RUNBACK"
TEAM_ID = "T0SANDBOX"
TEAM_NAME = "Runback sandbox"
BOT_NAME = "runback"

MAX_TEXT_CHARS = 40_000
FIRST_TS_SECONDS = 1_764_270_000

# What usergroups.list answers on a plan without user groups.
PLAN_ERRORS = ("paid_teams_only", "plan_upgrade_required")

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


class SlackWorkspace:
    """One sandbox workspace's state, its Python API, and what the Web API methods share."""

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

    def changed_messages(self, seen: Mapping[str, int]) -> list[dict[str, Any]]:
        """Messages (without their earlier versions) whose ``channel:ts`` is not in ``seen`` at
        their version, in post order: a console's new output copies only what changed."""
        with self._lock:
            changed = [
                {k: v for k, v in m.items() if k != "history"}
                for m in self._messages
                if seen.get(f"{m['channel']}:{m['ts']}") != m["version"]
            ]
            return copy.deepcopy(changed)

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
        """The files of the workspace: uploads completed (files.completeUploadExternal). An
        upload begun (files.getUploadURLExternal) and not completed is no file in Slack yet,
        and one whose bytes are still on their way would read as empty."""
        with self._lock:
            return copy.deepcopy([f for f in self._files.values() if f["completed"]])

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

    # -- messages -----------------------------------------------------------------------------

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
