"""A refusal the user must see: a message key of the catalogue and what it needs to render."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input or a refused request. Nothing was changed; ``key`` names the text to show."""

    def __init__(self, key: str, **context: Any) -> None:
        super().__init__(key)
        self.key = key
        self.context = context


class Superseded(Exception):
    """Someone wrote the operation since this step (or person) read it: a person's rollback
    button, an on-call engineer's /rollback, or the engine's next step. This write is dropped;
    the engine goes on from the store, a person's request decides again on what it now finds."""
