"""How Runback's own HTTP calls reach the sandbox's emulator instead of Google (``EMULATOR_HOST``),
as Google's client libraries do with their ``*_EMULATOR_HOST`` variables: ID tokens from the
emulator's token endpoint, and custom domains through its domain mapping route."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, urlsplit


def emulator_id_tokens(emulator_host: str) -> Callable[[str], str]:
    """An ID token source (audience -> token) backed by the emulator's token endpoint."""

    def fetch(audience: str) -> str:
        import requests  # at first use: a cold start does not pay for it

        answer = requests.get(
            f"http://{emulator_host}/_emulator/idtoken",
            params={"audience": audience},
            timeout=5,
        )
        answer.raise_for_status()
        return str(answer.json()["id_token"])

    return fetch


def emulator_url_rewrite(emulator_host: str) -> Callable[[str], str]:
    """Custom domains (``url:`` in app.yaml) reach the emulator's domain mapping route."""

    def rewrite(url: str) -> str:
        parts = urlsplit(url)
        if parts.netloc == emulator_host or not parts.netloc:
            return url
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        return f"http://{emulator_host}/_domain/{quote(parts.netloc)}{path}"

    return rewrite
