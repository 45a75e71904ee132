"""One check of every Slack payload before any listener sees it, as a Bolt global middleware
(so Socket Mode payloads meet it too, not only those over HTTP): the fields Runback's handlers
read are there, of the type Slack sends. A signed payload that lacks them (no ``user_id`` on a
command, a ``view`` that is a string) is answered 400, said in the log, and nothing runs; a
listener that tripped over it would answer 500 and leave an exception in the logs.

What Slack sends: slash commands (https://docs.slack.dev/interactivity/implementing-slash-commands),
``block_actions`` and ``view_submission`` payloads
(https://docs.slack.dev/reference/interaction-payloads).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware

log = logging.getLogger("runback.slack")

COMMAND_FIELDS = ("command", "user_id", "channel_id", "response_url", "trigger_id")


def payload_problem(body: Any) -> str:
    """What makes ``body`` unusable for Runback's listeners ("" when nothing does)."""
    if not isinstance(body, dict):
        return "the payload is not an object"
    if "command" in body:
        missing = [k for k in COMMAND_FIELDS if not _text(body.get(k))]
        return f"a slash command without {', '.join(missing)}" if missing else ""
    kind = body.get("type")
    if kind == "block_actions":
        return _click_problem(body)
    if kind in ("view_submission", "view_closed"):
        return _view_problem(body)
    return ""


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _user_problem(body: dict[str, Any]) -> str:
    user = body.get("user")
    return "" if isinstance(user, dict) and _text(user.get("id")) else "no user id"


def _click_problem(body: dict[str, Any]) -> str:
    problem = _user_problem(body)
    if problem:
        return problem
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        return "no actions"
    if not all(isinstance(a, dict) and _text(a.get("action_id")) for a in actions):
        return "an action without action_id"
    if not all(isinstance(a.get("value", ""), str) for a in actions):
        return "an action whose value is not a string"
    channel = _object(body.get("channel"))
    container = _object(body.get("container"))
    if not (_text(channel.get("id")) or _text(container.get("channel_id"))):
        return "no channel"
    return ""


def _view_problem(body: dict[str, Any]) -> str:
    problem = _user_problem(body)
    if problem:
        return problem
    view = body.get("view")
    if not isinstance(view, dict):
        return "the view is not an object"
    if not isinstance(view.get("private_metadata", ""), str):
        return "private_metadata is not a string"
    state = view.get("state", {})
    if not isinstance(state, dict) or not isinstance(state.get("values", {}), dict):
        return "the view's state is not an object of values"
    if not all(isinstance(block, dict) for block in state.get("values", {}).values()):
        return "a value block is not an object"
    return ""


class RefuseMalformed(Middleware):
    """Bolt's global middleware. A class rather than a function: Bolt builds a function
    middleware's arguments from the payload first, and that trips over the same bad shapes."""

    def process(
        self,
        *,
        req: BoltRequest,
        resp: BoltResponse,
        next: Callable[[], BoltResponse],
    ) -> BoltResponse:
        problem = payload_problem(req.body)
        if not problem:
            return next()
        log.warning("refused a signed Slack payload: %s", problem)
        return BoltResponse(status=400, body={"error": f"malformed Slack payload: {problem}"})


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
