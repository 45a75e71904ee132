"""Renders every user-facing message from ``templates/``.

- ``templates/<locale>/messages.yaml``: every word, per locale, as small Jinja strings.
- ``templates/blocks/<name>.json.j2``: the Block Kit layout of each message, shared by locales;
  every text in it is ``{{ t('key', ...) | tojson }}``.

Safety by construction: every ``{{ value }}`` inside a string is Slack-escaped (``& < >``) by
the environment's ``finalize`` hook, so user text can never become a mention or a link, and the
layouts JSON-encode whole strings with ``tojson`` (which yields Markup and so is left alone).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template
from markupsafe import Markup

from bot.ports import Message

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
LOCALES = ("en", "es")

SECTION_TEXT_LIMIT = 3000
CONTEXT_TEXT_LIMIT = 2000
HEADER_TEXT_LIMIT = 150
FALLBACK_TEXT_LIMIT = 3000


def slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: Any, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def upfirst(text: Any) -> Any:
    """Capitalise the first letter only (Jinja's ``capitalize`` lowercases the rest)."""
    result = str(text)[:1].upper() + str(text)[1:]
    return Markup(result) if isinstance(text, Markup) else result


def _finalize(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    if value is None:
        return ""
    return slack_escape(str(value))


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> Markup:
    """A date Slack shows in each reader's own time zone, with a UTC fallback."""
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return Markup(f"<!date^{int(moment.timestamp())}^{fmt}|{fallback}>")


def mention(user_id: str) -> Markup:
    """``<@U123>`` for a Slack user id (ids are alphanumeric; anything else is shown escaped)."""
    if user_id.isalnum():
        return Markup(f"<@{user_id}>")
    return Markup(slack_escape(user_id))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def text_bar(percent: int, width: int = 20) -> str:
    filled = round(width * percent / 100)
    return "█" * filled + "░" * (width - filled)


class Renderer:
    def __init__(self, default_locale: str = "en", templates_dir: Path = TEMPLATES_DIR) -> None:
        if default_locale not in LOCALES:
            raise ValueError(f"unknown locale {default_locale!r}; expected one of {LOCALES}")
        self.default_locale = default_locale
        self.env = Environment(
            loader=FileSystemLoader(str(templates_dir)),
            autoescape=False,
            finalize=_finalize,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        self.env.filters.update(clip=clip, duration=duration, bar=text_bar, upfirst=upfirst)
        self.env.globals.update(mention=mention, date=slack_date)
        self.catalogs = {locale: _load_catalog(templates_dir, locale) for locale in LOCALES}

    def text(self, key: str, /, locale: str | None = None, **context: Any) -> str:
        """One string of the catalogue, rendered with escaped values."""
        locale = locale or self.default_locale

        def t(inner: str, **kw: Any) -> Markup:
            return Markup(self.text(inner, locale, **{**context, **kw}))

        return self._string(locale, key).render(**{"t": t, **context}).strip()

    def message(self, name: str, /, locale: str | None = None, **context: Any) -> Message:
        locale = locale or self.default_locale

        def t(inner: str, **kw: Any) -> Markup:
            return Markup(self.text(inner, locale, **{**context, **kw}))

        template = self.env.get_template(f"blocks/{name}.json.j2")
        rendered = template.render(t=t, locale=locale, **context)
        try:
            payload = json.loads(rendered)
        except json.JSONDecodeError as error:
            raise ValueError(f"template blocks/{name} rendered invalid JSON: {error}") from None
        blocks = [_enforce_limits(block) for block in payload.get("blocks", [])]
        return Message(text=clip(payload.get("text", ""), FALLBACK_TEXT_LIMIT), blocks=blocks)

    def _string(self, locale: str, key: str) -> Template:
        return _compiled(self, locale, key)


@lru_cache(maxsize=2048)
def _compiled(renderer: Renderer, locale: str, key: str) -> Template:
    catalog = renderer.catalogs[locale]
    if key not in catalog:
        raise KeyError(f"no text {key!r} in templates/{locale}/messages.yaml")
    return renderer.env.from_string(catalog[key])


def _load_catalog(templates_dir: Path, locale: str) -> dict[str, str]:
    data = yaml.safe_load((templates_dir / locale / "messages.yaml").read_text(encoding="utf-8"))
    return _flatten(data)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def _enforce_limits(block: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: never send a text longer than Slack accepts."""
    kind = block.get("type")
    if kind == "section" and isinstance(block.get("text"), dict):
        block["text"]["text"] = clip(block["text"]["text"], SECTION_TEXT_LIMIT)
    elif kind == "header":
        block["text"]["text"] = clip(block["text"]["text"], HEADER_TEXT_LIMIT)
    elif kind == "context":
        for element in block.get("elements", []):
            if "text" in element:
                element["text"] = clip(element["text"], CONTEXT_TEXT_LIMIT)
    return block
