"""What the sandbox's web page shows, as one JSON-ready snapshot: the Slack emulator's workspace as
the current sandbox user sees it (channels, messages and threads, ephemeral messages meant for
them, the modal open for them), Cloud Run's ground truth per service, the pending faults and the
sandbox clock.

The page renders the snapshot; it never reads the emulators itself. Two things Slack keeps in
the client and never stores are kept here: the answers carried by slash-command acks (shown to
their user only) and which modals the page has closed.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

from bot.sandbox.console import BEHAVIOUR_KEYS, Sandbox
from bot.sandbox.emulator.slack_api import BOT_USER_ID

BOT_DISPLAY_NAME = "Runback"
MAX_ACKS = 200  # acks kept for the page (oldest dropped first)


class Workspace:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._lock = threading.Lock()
        self._acks: list[dict[str, Any]] = []
        self._ack_seq = 0
        self._closed_views: set[str] = set()
        sandbox.ack_listeners.append(self._on_ack)

    # -- what only the client knows in Slack --------------------------------------------------

    def _on_ack(self, user_id: str, channel_id: str, body: dict[str, Any]) -> None:
        """A slash command's ack with an answer: Slack shows it under the command, to its user
        (to everyone with ``response_type: in_channel``)."""
        newest = self.sandbox.emulator.slack.messages(channel_id, with_history=False)
        with self._lock:
            self._ack_seq += 1
            self._acks.append(
                {
                    "key": f"ack-{self._ack_seq}",
                    "channel": channel_id,
                    "ts": f"ack-{self._ack_seq}",
                    "after": newest[-1]["ts"] if newest else "",
                    "seq": self._ack_seq,
                    "thread_ts": None,
                    "user": BOT_USER_ID,
                    "text": str(body.get("text") or ""),
                    "blocks": body.get("blocks") or [],
                    "attachments": body.get("attachments") or [],
                    "files": [],
                    "version": 1,
                    "ephemeral_to": None if body.get("response_type") == "in_channel" else user_id,
                }
            )
            del self._acks[:-MAX_ACKS]

    def close_view(self, view_id: str) -> None:
        with self._lock:
            self._closed_views.add(view_id)

    # -- the snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        box = self.sandbox
        me = box.users[box.user]
        names = {**box.names, BOT_USER_ID: BOT_DISPLAY_NAME}
        return {
            "me": {"name": box.user, "id": me},
            "channel": {"name": box.channel, "id": box.channels[box.channel]},
            "users": [
                {"name": name, "id": user.id, "real_name": user.real_name or name}
                for name, user in box.config.sandbox.users.items()
            ],
            "channels": [{"name": name, "id": cid} for name, cid in box.channels.items()],
            "names": names,
            "channel_names": {cid: name for name, cid in box.channels.items()},
            "clock": f"{box.clock.now():%Y-%m-%d %H:%M:%S} UTC",
            "messages": self._messages(me, names),
            "view": self._open_view(me),
            "services": [self._service(s.name, s.environment) for s in box.config.services],
            "faults": [
                {"api": f.api, "status": f.status, "times": f.times}
                for f in box.emulator.router.faults.list()
            ],
            "fault_apis": box.fault_apis(),
            "behaviour_keys": list(BEHAVIOUR_KEYS),
        }

    def _messages(self, me: str, names: dict[str, str]) -> list[dict[str, Any]]:
        """Every message the current user can see, in the order Slack shows them; a thread's
        root counts its replies."""
        posted = self.sandbox.emulator.slack.messages(with_history=False)
        with self._lock:
            acks = [dict(a) for a in self._acks]
        shown = [
            _message(m, names, key=f"{m['channel']}:{m['ts']}", order=(m["ts"], 0))
            for m in posted
            if m.get("ephemeral_to") in (None, me)
        ]
        shown += [
            _message(a, names, key=a["key"], order=(a["after"], a["seq"]))
            for a in acks
            if a["ephemeral_to"] in (None, me)
        ]
        shown.sort(key=lambda m: m.pop("order"))
        replies: dict[tuple[str, str], int] = {}
        for message in shown:
            if not message["root"]:
                key = (message["channel"], message["thread_ts"])
                replies[key] = replies.get(key, 0) + 1
        for message in shown:
            message["replies"] = replies.get((message["channel"], message["ts"]), 0)
        return shown

    def _open_view(self, me: str) -> dict[str, Any] | None:
        """The newest modal opened for the current user, unless the page closed it."""
        mine = [v for v in self.sandbox.emulator.slack.views() if v.get("user") == me]
        if not mine:
            return None
        record = mine[-1]
        with self._lock:
            if record["id"] in self._closed_views:
                return None
        return {
            "id": record["id"],
            "hash": record["hash"],
            "version": record["version"],
            "view": record["view"],
        }

    def _service(self, name: str, environment: str) -> dict[str, Any]:
        cloudrun = self.sandbox.emulator.cloudrun
        try:
            traffic = cloudrun.traffic(name)
            revisions = cloudrun.revisions(name)
        except (KeyError, ValueError) as error:  # a service the emulator does not know (yet)
            return {"name": name, "environment": environment, "error": str(error)}
        percent: dict[str, int] = {}
        tags: dict[str, list[str]] = {}
        for row in traffic:
            revision = str(row["revision"])
            percent[revision] = percent.get(revision, 0) + int(row["percent"] or 0)
            if row["tag"]:
                tags.setdefault(revision, []).append(str(row["tag"]))
        for entry in revisions:
            entry["percent"] = percent.get(entry["revision"], 0)
            entry["tags"] = tags.get(entry["revision"], [])
        return {
            "name": name,
            "environment": environment,
            "traffic": [dict(row) for row in traffic],
            "revisions": revisions,
        }


def _message(
    message: dict[str, Any], names: dict[str, str], key: str, order: tuple[str, int]
) -> dict[str, Any]:
    thread_ts = message.get("thread_ts")
    return {
        "key": key,
        "order": order,
        "channel": message["channel"],
        "ts": message["ts"],
        "thread_ts": thread_ts,
        "root": thread_ts in (None, message["ts"]),
        "author": names.get(message.get("user") or "", message.get("user") or ""),
        "bot": message.get("user") == BOT_USER_ID,
        "text": message.get("text") or "",
        "blocks": message.get("blocks") or [],
        "attachments": message.get("attachments") or [],
        "files": [_file(f) for f in message.get("files") or []],
        "version": message.get("version", 1),
        "ephemeral": message.get("ephemeral_to") is not None,
    }


def _file(summary: dict[str, Any]) -> dict[str, Any]:
    """A file as the page links it: through the page's own /files/ route."""
    name = str(summary.get("name") or "file")
    mimetype = str(summary.get("mimetype") or "application/octet-stream")
    return {
        "id": summary.get("id"),
        "name": name,
        "title": summary.get("title") or name,
        "mimetype": mimetype,
        "size": summary.get("size"),
        "url": f"/files/{quote(str(summary.get('id')), safe='')}/{quote(name, safe='')}",
        "image": mimetype.startswith("image/"),
    }
