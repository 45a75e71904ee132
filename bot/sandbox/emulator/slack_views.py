"""The Slack emulator's ``views.open`` and ``views.update``: a view is checked by slack_sdk's
models (slack_blocks), opened once per trigger_id within TRIGGER_TTL_S, updated by id or
external id with an optional hash."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from bot.sandbox.emulator.slack_args import Args, SlackError, _is_empty, _load_json, _required
from bot.sandbox.emulator.slack_blocks import check_view
from bot.sandbox.emulator.slack_workspace import (
    APP_ID,
    BOT_ID,
    TEAM_ID,
    TRIGGER_TTL_S,
    SlackWorkspace,
    _Trigger,
)


class SlackViews(SlackWorkspace):
    """Web API methods on views (lock held)."""

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
