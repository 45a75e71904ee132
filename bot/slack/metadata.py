"""A form's private_metadata, sealed: Runback writes it when it opens a form and reads it back
when the form is submitted. An HMAC-SHA256 under a key derived from the signing secret makes
any other value (edited, or made up) fail, so what the form acts on (which channel, service and
image, for whom) is only ever what Runback itself opened it with."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any


class ViewSeal:
    def __init__(self, signing_secret: str) -> None:
        # Without a signing secret (never in production: `serve` refuses to start) a key of this
        # process alone: forms then do not outlive a restart, and nobody can forge one.
        secret = signing_secret.encode() or secrets.token_bytes(32)
        self._key = hashlib.sha256(b"runback private_metadata\0" + secret).digest()

    def seal(self, data: dict[str, str]) -> str:
        return json.dumps({"data": data, "mac": self._mac(data)}, separators=(",", ":"))

    def open(self, text: str) -> dict[str, Any] | None:
        """The data sealed in ``text``; None when it is not exactly what Runback sealed."""
        try:
            outer = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(outer, dict):
            return None
        data, mac = outer.get("data"), outer.get("mac")
        if not isinstance(data, dict) or not isinstance(mac, str):
            return None
        return data if hmac.compare_digest(self._mac(data), mac) else None

    def _mac(self, data: dict[str, Any]) -> str:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(self._key, canonical, hashlib.sha256).hexdigest()
