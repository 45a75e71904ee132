"""The Slack emulator's files, as ``files_upload_v2`` uses them: get an upload URL, upload the
bytes, complete the upload (sharing it in channels); ``url_private`` downloads need the token."""

from __future__ import annotations

import copy
import mimetypes
import secrets
from typing import Any

from bot.sandbox.emulator.http import HttpError, Request, Response
from bot.sandbox.emulator.slack_args import Args, SlackError, _is_empty, _load_json, _required
from bot.sandbox.emulator.slack_workspace import BOT_USER_ID, SlackWorkspace


class SlackFiles(SlackWorkspace):
    """Web API methods on files (lock held), and the upload and download URLs."""

    def _files_get_upload_url(self, args: Args) -> Args:
        _required(args, "filename", "length")
        if not str(args["length"]).isdigit():
            raise SlackError("invalid_arguments", ["[ERROR] length must be an integer"])
        self._seq += 1
        file_id = f"F{self._seq:010d}"
        filename = str(args["filename"])
        self._files[file_id] = {
            "id": file_id,
            "name": filename,
            "title": filename,
            "mimetype": mimetypes.guess_type(filename)[0] or "application/octet-stream",
            "size": int(args["length"]),
            "alt_txt": args.get("alt_txt"),
            "snippet_type": args.get("snippet_type"),
            "user": BOT_USER_ID,
            "created": int(self._clock()),
            "uploaded": False,
            "completed": False,  # files.completeUploadExternal: only then is it a file
            "channels": [],
            "content": "",
        }
        return {"upload_url": f"{self.base_url}/_slack/upload/{file_id}", "file_id": file_id}

    def _upload(self, request: Request) -> Response:
        with self._lock:
            record = self._files.get(request.params["file_id"])
            if record is None:
                raise HttpError(404, "no such upload")
            self._file_bytes[record["id"]] = request.body
            record.update(
                uploaded=True,
                size=len(request.body),
                content=request.body.decode("utf-8", errors="replace"),
            )
        return Response(200, f"OK - {len(request.body)}".encode(), "text/plain")

    def _download(self, request: Request) -> Response:
        """A file's ``url_private``, as Slack serves it: to a request that carries the token in
        an ``Authorization: Bearer`` header. Slack answers others with its sign-in page rather
        than the file (https://gist.github.com/ErikKalkoken/f3ab28617d5099531ded865d111dbac1,
        its comments); here that is a 403 with a short HTML page, and an unknown file a 404."""
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        with self._lock:
            record = self._files.get(request.params["file_id"])
            content = self._file_bytes.get(request.params["file_id"])
            if record is None or content is None or record["name"] != request.params["name"]:
                return Response(404, b"<html><body>Not found</body></html>", "text/html")
            if not token or not secrets.compare_digest(token, self.token):
                page = b"<html><body>Sign in to your workspace to see this file.</body></html>"
                return Response(403, page, "text/html")
            return Response(200, content, record["mimetype"])

    def _files_complete_upload(self, args: Args) -> Args:
        _required(args, "files")
        wanted = _load_json(args["files"], "invalid_arguments")
        if not isinstance(wanted, list) or not wanted:
            raise SlackError("invalid_arguments", ["[ERROR] files must be a non-empty array"])
        records = [self._uploaded_file(item) for item in wanted]
        channels = [self._bot_channel(c) for c in self._share_targets(args)]
        thread_ts = self._thread_root(channels[0], args.get("thread_ts")) if channels else None
        for record in records:
            record["completed"] = True
            record["channels"] += [c for c in channels if c not in record["channels"]]
        text = str(args.get("initial_comment") or "")
        for channel in channels:
            summaries = [self._file_wire(r) for r in records]
            self._store(channel, {"text": text}, thread_ts, "file", files=summaries)
        return {"files": [self._file_wire(r) for r in records]}

    def _uploaded_file(self, item: Any) -> dict[str, Any]:
        file_id = item.get("id") if isinstance(item, dict) else None
        record = self._files.get(str(file_id))
        if record is None or not record["uploaded"]:
            raise SlackError("file_not_found", [f"[ERROR] file {file_id} was not uploaded"])
        if item.get("title"):
            record["title"] = str(item["title"])
        return record

    def _share_targets(self, args: Args) -> list[str]:
        names = [args["channel_id"]] if not _is_empty(args.get("channel_id")) else []
        names += [c for c in str(args.get("channels") or "").split(",") if c]
        return [self._channel_by_id(name) for name in names]  # ids, like channel_id says

    def _file_wire(self, record: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "name", "title", "mimetype", "size", "user", "created", "channels")
        wire = {key: copy.deepcopy(record[key]) for key in keys}
        wire["url_private"] = f"{self.base_url}/_slack/files/{record['id']}/{record['name']}"
        return wire
