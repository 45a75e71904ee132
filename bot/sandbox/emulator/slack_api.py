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

The emulator is split by concern: ``slack_args`` (reading arguments, errors), ``slack_blocks``
(Block Kit validation), ``slack_workspace`` (state, Python API, message store), ``slack_chat``,
``slack_views`` and ``slack_files`` (the Web API methods), ``slack_control`` (the control API)
and this module (routes, authentication). Socket Mode lives in ``socket_mode``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from bot.sandbox.emulator.http import Request, Response, Router, json_response
from bot.sandbox.emulator.slack_args import Args, Method, SlackError, _parse_args, slack_error
from bot.sandbox.emulator.slack_blocks import check_block, check_blocks, check_view
from bot.sandbox.emulator.slack_chat import SlackChat
from bot.sandbox.emulator.slack_control import SlackControl
from bot.sandbox.emulator.slack_files import SlackFiles
from bot.sandbox.emulator.slack_views import SlackViews
from bot.sandbox.emulator.slack_workspace import APP_ID, BOT_ID, BOT_USER_ID, TEAM_ID

__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "SlackEmulator",
    "SlackError",
    "check_block",
    "check_blocks",
    "check_view",
    "slack_error",
]


class SlackEmulator(SlackChat, SlackViews, SlackFiles, SlackControl):
    """Users, channels, user groups, messages, views and files of one sandbox workspace."""

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
