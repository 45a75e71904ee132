"""The Slack emulator's control API (``/_emulator/slack/...``): the Python API over HTTP, for
the sandbox's CLI and web page and for tests in other processes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.sandbox.emulator.http import HttpError, Request, Response, Router, json_response
from bot.sandbox.emulator.slack_args import SlackError
from bot.sandbox.emulator.slack_workspace import BOT_USER_ID, SlackWorkspace


class SlackControl(SlackWorkspace):
    """Seed, read and change the workspace over HTTP."""

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
