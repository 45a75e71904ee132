"""The Chat and Directory ports over slack_sdk's WebClient."""

from __future__ import annotations

import logging
import threading
import time
from http.client import RemoteDisconnected
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.models.metadata import Metadata
from slack_sdk.webhook import WebhookClient

from bot.ports import ChatError, Message, Posted

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


# The outbox logs one line per failure itself; slack_sdk would add its own on a timeout.
_SDK_LOG = logging.getLogger("runback.slack.sdk")
_SDK_LOG.setLevel(logging.CRITICAL)
CARD_EVENT = "runback_card"  # message metadata that names the card a message shows
CARD_TIMEOUT_S = 8


def _card_client(client: WebClient) -> WebClient:
    """The same workspace, without slack_sdk's retry handlers: a card's retries are the
    outbox's (durable, with Retry-After honoured off the critical path), and a post retried
    blindly after a lost answer could show a second card."""
    return WebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=CARD_TIMEOUT_S,
        retry_handlers=[],
        logger=_SDK_LOG,
    )


def _retry_after(error: SlackApiError) -> float | None:
    headers = {k.lower(): v for k, v in (error.response.headers or {}).items()}
    value = headers.get("retry-after")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _chat_error(error: Exception) -> ChatError:
    """Slack's answer, or the lack of one, as the port's error. A 5xx or a lost connection
    after sending may still have posted; a refused connection has not."""
    if isinstance(error, SlackApiError):
        status = error.response.status_code
        code = str(error.response.get("error") or f"http_{status}")
        return ChatError(code, _retry_after(error), maybe_sent=status >= 500)
    if isinstance(error, URLError) and isinstance(error.reason, ConnectionRefusedError):
        return ChatError("unreachable")
    if isinstance(error, TimeoutError | RemoteDisconnected | ConnectionResetError | URLError):
        return ChatError("timeout", maybe_sent=True)
    return ChatError(type(error).__name__, maybe_sent=True)


# usergroups.list on a plan without user groups (https://docs.slack.dev/reference/methods/usergroups.list)
PAID_PLAN_ERRORS = ("paid_teams_only", "plan_upgrade_required")


class SlackChat:
    def __init__(self, client: WebClient) -> None:
        self.client = client
        self.cards = _card_client(client)

    def post_card(
        self, channel: str, message: Message, card: str, thread_ts: str | None = None
    ) -> Posted:
        # Message metadata lets a retry find a post whose answer was lost (conversations.history
        # with include_all_metadata): https://api.slack.com/metadata/using
        metadata = Metadata(event_type=CARD_EVENT, event_payload={"card": card})
        try:
            response = self.cards.chat_postMessage(
                channel=channel,
                text=message.text,
                blocks=message.blocks,
                thread_ts=thread_ts,
                metadata=metadata,
            )
        except Exception as error:
            raise _chat_error(error) from None
        return Posted(str(response["channel"]), str(response["ts"]))

    def update_card(self, channel: str, ts: str, message: Message) -> None:
        try:
            self.cards.chat_update(channel=channel, ts=ts, text=message.text, blocks=message.blocks)
        except Exception as error:
            raise _chat_error(error) from None

    def find_card(self, channel: str, card: str, oldest: str) -> str | None:
        try:
            response = self.cards.conversations_history(
                # 15: Slack's cap for apps outside the Marketplace (2025 rate-limit change)
                channel=channel,
                oldest=oldest or None,
                include_all_metadata=True,
                limit=15,
            )
        except Exception as error:
            raise _chat_error(error) from None
        for found in response.get("messages") or []:
            metadata: dict[str, Any] = found.get("metadata") or {}
            payload = metadata.get("event_payload") or {}
            if metadata.get("event_type") == CARD_EVENT and payload.get("card") == card:
                return str(found["ts"])
        return None

    def is_member(self, channel: str) -> bool:
        """Whether the bot is in the channel (conversations.info; needs channels:read)."""
        try:
            response = self.cards.conversations_info(channel=channel)
        except Exception as error:
            raise _chat_error(error) from None
        return bool((response.get("channel") or {}).get("is_member"))

    def reply(self, response_url: str, message: Message) -> None:
        try:
            answer = WebhookClient(response_url, timeout=CARD_TIMEOUT_S).send(
                text=message.text, blocks=message.blocks, response_type="ephemeral"
            )
        except Exception as error:
            raise _chat_error(error) from None
        if answer.status_code != 200:
            raise ChatError(f"http_{answer.status_code}", maybe_sent=answer.status_code >= 500)

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
        try:
            self.cards.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                filename=filename,
                title=title,
                initial_comment=comment,
                **body,
            )
        except Exception as error:
            raise _chat_error(error) from None


class SlackDirectory:
    """User-group membership, read from Slack and cached briefly (roles change rarely; a stale
    minute is better than an extra API call on every click)."""

    def __init__(self, client: WebClient, ttl_s: float = 60.0) -> None:
        # No sleeping retries: roles are read before an emergency PATCH, and a 429 must not
        # delay it (the last known groups are kept instead).
        self.client = _card_client(client)
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[str, set[str]] = {}
        self._names: dict[str, str | None] = {}
        self._loaded_at = float("-inf")
        self._problem = ""

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

    def problem(self) -> str:
        """Slack's reason for not showing user groups at the last read ("" when it did)."""
        with self._lock:
            return self._problem

    def check(self) -> str:
        """Read the groups now (at start) and return the problem, if any."""
        with self._lock:
            self._cache = self._load()
            self._loaded_at = time.monotonic()
            return self._problem

    def _load(self) -> dict[str, set[str]]:
        try:
            response = self.client.usergroups_list(include_users=True)
        except Exception as error:  # keep the last known groups rather than lose roles
            # Free workspaces answer paid_teams_only (grafana/oncall#4793), or
            # plan_upgrade_required (usergroups.list's documented errors): the same fact.
            answered = (
                str(error.response.get("error") or "")
                if isinstance(error, SlackApiError)
                else "unreachable"
            )
            problem = "paid_teams_only" if answered in PAID_PLAN_ERRORS else answered
            if problem != self._problem:
                log.error("could not read Slack user groups: %s", answered)
            self._problem = problem or "unknown"
            return self._cache
        self._problem = ""
        groups: list[dict[str, Any]] = response.get("usergroups") or []
        return {str(group["handle"]): set(group.get("users") or ()) for group in groups}
