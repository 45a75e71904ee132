"""How the Slack emulator reads a Web API call and answers an error: form or JSON arguments,
JSON-in-a-string values, required arguments, and ``{"ok": false}`` answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from bot.sandbox.emulator.http import Request, Response, json_response

Args = dict[str, Any]
Method = Callable[[Args], Args]


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
