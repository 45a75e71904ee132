"""The Chat and Directory ports over slack_sdk's WebClient."""

from __future__ import annotations

import logging
import threading
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.ports import Message

log = logging.getLogger("runback.slack")


def make_client(token: str, base_url: str | None) -> WebClient:
    client = WebClient(token=token, base_url=base_url or WebClient.BASE_URL, timeout=10)
    client.retry_handlers.extend(
        [
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=2),
        ]
    )
    return client


class SlackChat:
    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post(self, channel: str, message: Message, thread_ts: str | None = None) -> str:
        response = self.client.chat_postMessage(
            channel=channel, text=message.text, blocks=message.blocks, thread_ts=thread_ts
        )
        return str(response["ts"])

    def update(self, channel: str, ts: str, message: Message) -> None:
        self.client.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)

    def ephemeral(self, channel: str, user: str, message: Message) -> None:
        self.client.chat_postEphemeral(
            channel=channel, user=user, text=message.text, blocks=message.blocks
        )

    def upload(
        self,
        channel: str,
        thread_ts: str | None,
        filename: str,
        content: str | bytes,
        title: str,
        comment: str,
    ) -> None:
        body = {"file": content} if isinstance(content, bytes) else {"content": content}
        self.client.files_upload_v2(
            channel=channel,
            thread_ts=thread_ts,
            filename=filename,
            title=title,
            initial_comment=comment,
            **body,
        )


class SlackDirectory:
    """User-group membership, read from Slack and cached briefly (roles change rarely; a stale
    minute is better than an extra API call on every click)."""

    def __init__(self, client: WebClient, ttl_s: float = 60.0) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[str, set[str]] = {}
        self._names: dict[str, str | None] = {}
        self._loaded_at = float("-inf")

    def display_name(self, user_id: str) -> str | None:
        """From ``users.info``: the profile's display name, else the real name (Slack lets the
        display name be empty). Cached: names are shown, never used to decide anything."""
        with self._lock:
            if user_id in self._names:
                return self._names[user_id]
        try:
            user = self.client.users_info(user=user_id)["user"]
        except SlackApiError as error:
            log.warning("could not read Slack user %s: %s", user_id, error.response.get("error"))
            return None
        profile = user.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or user.get("real_name")
        with self._lock:
            self._names[user_id] = str(name) if name else None
            return self._names[user_id]

    def group_members(self, handles: tuple[str, ...]) -> dict[str, set[str]]:
        with self._lock:
            if time.monotonic() - self._loaded_at > self.ttl_s:
                self._cache = self._load()
                self._loaded_at = time.monotonic()
            return {handle: set(self._cache.get(handle, ())) for handle in handles}

    def _load(self) -> dict[str, set[str]]:
        try:
            response = self.client.usergroups_list(include_users=True)
        except SlackApiError as error:  # keep the last known groups rather than lose roles
            log.warning("could not read Slack user groups: %s", error.response.get("error"))
            return self._cache
        return {
            str(group["handle"]): set(group.get("users") or ())
            for group in response.get("usergroups", [])
        }
