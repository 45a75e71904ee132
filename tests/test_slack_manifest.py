"""slack-manifest.yaml asks for exactly the bot scopes the code needs: the Slack Web API methods
are found in the code (every WebClient method it calls), each needs its scope in the manifest,
and the manifest has no scope that nothing needs."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import yaml
from slack_sdk import WebClient

from bot.slack.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]
# The scopes of a bot token for each method, for the conversations Runback works in (public
# and private channels), from each method's page, https://docs.slack.dev/reference/methods/NAME
# (conversations.*: "public channel: channels:*, private channel: groups:*",
# https://api.slack.com/conversations-api). files_upload_v2 calls files.getUploadURLExternal and
# files.completeUploadExternal (files:write). auth.test and views.open need no scope.
SCOPES: dict[str, frozenset[str]] = {
    "auth_test": frozenset(),
    "chat_postMessage": frozenset({"chat:write"}),
    "chat_postEphemeral": frozenset({"chat:write"}),
    "chat_update": frozenset({"chat:write"}),
    "chat_getPermalink": frozenset(),
    "conversations_info": frozenset({"channels:read", "groups:read"}),
    "conversations_history": frozenset({"channels:history", "groups:history"}),
    "files_upload_v2": frozenset({"files:write"}),
    "files_getUploadURLExternal": frozenset({"files:write"}),
    "files_completeUploadExternal": frozenset({"files:write"}),
    "usergroups_list": frozenset({"usergroups:read"}),
    "usergroups_users_list": frozenset({"usergroups:read"}),
    "users_info": frozenset({"users:read"}),
    "views_open": frozenset(),
    "views_update": frozenset(),
}
# Not a Web API method: slash commands need this scope (https://docs.slack.dev/reference/scopes/commands).
FEATURE_SCOPES = {"commands": bool(COMMANDS)}


def web_api_calls() -> set[str]:
    """Every WebClient method named anywhere in bot/ (the emulators answer, never call)."""
    methods = {name for name, _ in inspect.getmembers(WebClient, inspect.isfunction)}
    methods -= {name for name in methods if name.startswith("_")} | {"api_call"}
    called: set[str] = set()
    for path in (REPO / "bot").rglob("*.py"):
        if "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in methods:
                called.add(node.attr)
    return called


def manifest() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((REPO / "slack-manifest.yaml").read_text(encoding="utf-8"))


def test_the_code_calls_the_methods_this_table_knows() -> None:
    called = web_api_calls()
    assert {"chat_postMessage", "conversations_info", "usergroups_list"} <= called
    unknown = called - SCOPES.keys()
    assert not unknown, f"add the scopes of {sorted(unknown)} to SCOPES (from Slack's docs)"


def test_every_method_the_code_calls_has_its_scope() -> None:
    granted = set(manifest()["oauth_config"]["scopes"]["bot"])
    for method in sorted(web_api_calls()):
        missing = SCOPES[method] - granted
        assert not missing, f"{method} needs {sorted(missing)}"


def test_the_manifest_asks_for_no_scope_nothing_uses() -> None:
    granted = set(manifest()["oauth_config"]["scopes"]["bot"])
    needed = {scope for method in web_api_calls() for scope in SCOPES[method]}
    needed |= {scope for scope, used in FEATURE_SCOPES.items() if used}
    assert granted - needed == set(), "unused scopes"
    assert needed - granted == set()


def test_commands_interactivity_and_request_urls() -> None:
    app = manifest()
    commands = app["features"]["slash_commands"]
    assert sorted(c["command"] for c in commands) == sorted(COMMANDS)
    for command in commands:
        assert command["url"] == "https://RUNBACK_URL/slack/events"
        assert command["usage_hint"] and command["description"]
    interactivity = app["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert interactivity["request_url"] == "https://RUNBACK_URL/slack/events"
