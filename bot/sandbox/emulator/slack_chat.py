"""The Slack emulator's messaging methods: ``auth.test``, ``chat.*``, ``users.info``,
``usergroups.*``, ``conversations.*``, and the response URLs of slash commands and actions."""

from __future__ import annotations

from typing import Any

from bot.sandbox.emulator.http import Request, Response, json_response
from bot.sandbox.emulator.slack_args import Args, SlackError, _is_empty, _load_json, _truthy
from bot.sandbox.emulator.slack_workspace import (
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    TEAM_ID,
    TEAM_NAME,
    SlackWorkspace,
    _ResponseUrl,
)

RESPONSE_URL_USES = 5
RESPONSE_URL_TTL_S = 30 * 60


class SlackChat(SlackWorkspace):
    """Web API methods on messages, users, user groups and conversations (lock held)."""

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

    # -- response_url -------------------------------------------------------------------------

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
