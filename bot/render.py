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
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache, lru_cache, partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template
from markupsafe import Markup

from bot.policy.redact import without_addresses
from bot.ports import Message

# Beside bot/ in the checkout; bot/templates in an installed copy (see pyproject.toml).
_CHECKOUT_TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
TEMPLATES_DIR = (
    _CHECKOUT_TEMPLATES
    if _CHECKOUT_TEMPLATES.is_dir()
    else Path(__file__).resolve().parent / "templates"
)
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


def _md_finalize(value: Any) -> Any:
    return "" if value is None else md_escape(value)


def _environment(templates_dir: Path, finalize: Callable[[Any], Any]) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(templates_dir)),
        auto_reload=False,  # templates ship with the code: no stat() per message
        autoescape=False,
        finalize=finalize,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> Markup:
    """A date Slack shows in each reader's own time zone, with a UTC fallback."""
    fallback = moment.strftime("%Y-%m-%d %H:%M UTC")
    return Markup(f"<!date^{int(moment.timestamp())}^{fmt}|{fallback}>")


def is_user_id(text: str) -> bool:
    """A Slack user id (``U…`` or, on Enterprise Grid, ``W…``)."""
    return re.fullmatch(r"[UW][A-Z0-9]{2,}", text) is not None


def mention(user_id: str) -> Markup:
    """``<@U123>`` for a Slack user id; anything else (e.g. "runback", the bot acting on its
    own) is shown as escaped text, never as markup."""
    if is_user_id(user_id):
        return Markup(f"<@{user_id}>")
    return Markup(slack_escape(user_id[:1].upper() + user_id[1:]))


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


def when(moment: datetime | None) -> str:
    """``2026-11-27 21:04:05 UTC`` (naive datetimes are taken as UTC); ``""`` for None."""
    if moment is None:
        return ""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def clock_time(moment: datetime | str | None) -> str:
    """``13:04`` (UTC) for a datetime or its ISO text; ``""`` for None. Data times on cards."""
    if not moment:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%H:%M")


def number(value: float | None, digits: int = 2) -> str:
    """``2340.0`` -> ``2340``, ``412.456`` -> ``412.46``; ``""`` for None."""
    if value is None:
        return ""
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def pct(ratio: float | None) -> str:
    """A ratio as a percentage: ``0.0712`` -> ``7.12%``, ``0.05`` -> ``5%``; ``""`` for None."""
    if ratio is None:
        return ""
    percent = ratio * 100
    if percent == 0 or abs(percent) >= 0.01:
        return f"{number(percent)}%"
    return f"{percent:.2g}%"  # tiny but not zero: never shown as 0%


def plain(value: Any) -> str:
    """Any fact as text: datetimes by ``when``, floats by ``number``; ``""`` for None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, float):
        return number(value)
    return str(value)


_LINE_BREAKS = re.compile(r"\r\n|[\r\n\u2028\u2029]")


_MD_PUNCTUATION = re.compile(r"([\\`*_\[\]<>|~])")
_MD_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
_MD_LINE_START = re.compile(r"^(\s*)(#|>|[-+](?=\s)|\d+[.)](?=\s))", re.M)


def md_escape(text: Any) -> Markup:
    """Plain text that Markdown shows as itself: every character that could start emphasis,
    code, a link, HTML, a table cell or an entity is backslash-escaped (CommonMark allows it
    before any ASCII punctuation), and so is a heading, quote or list marker at a line's start.
    Slack's escaping (``&amp;``) is for mrkdwn only: a Markdown file would show it literally."""
    if isinstance(text, Markup):
        return text
    escaped = _MD_PUNCTUATION.sub(r"\\\1", "" if text is None else str(text))
    escaped = _MD_ENTITY.sub(r"\\&", escaped)
    return Markup(_MD_LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), escaped))


def md_cell(text: Any, limit: int = 1000) -> str:
    """Text that stays inside one Markdown table cell: clipped to ``limit``, newlines become
    spaces (the document's ``md_escape`` then escapes ``|`` and every other markup character)."""
    if text is None:
        return ""
    return _LINE_BREAKS.sub(" ", clip(text, limit))


def md_code(text: Any) -> Markup:
    """A Markdown code span whose fence outlasts any backtick run inside; ``""`` when empty.
    Its text is shown as is (code spans take no escapes), but for ``|``, which GFM tables read
    as a cell border even inside a code span unless escaped."""
    text = "" if text is None else _LINE_BREAKS.sub(" ", str(text))
    if not text:
        return Markup("")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    # CommonMark strips one space from each end when both ends have one, and needs a space
    # between the fence and a backtick of the content.
    edge = text[0] + text[-1]
    pad = " " if "`" in edge or (edge == "  " and text.strip()) else ""
    return Markup(f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|"))


def md_url(url: Any, limit: int = 2000) -> Markup:
    """An http(s) URL safe as a Markdown link destination (``()|<>"`` and spaces
    percent-encoded); ``""`` for anything else or anything longer than ``limit``, which is then
    shown as text, never linked."""
    url = "" if url is None else str(url).strip()
    if len(url) > limit:
        return Markup("")
    try:
        parts = urlsplit(url)
    except ValueError:
        return Markup("")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return Markup("")
    return Markup(quote(url, safe=":/?#[]@!$&'*+,;=%~-._"))


def text_bar(percent: int, width: int = 20) -> str:
    filled = round(width * percent / 100)
    return "█" * filled + "░" * (width - filled)


class Renderer:
    def __init__(self, default_locale: str = "en", templates_dir: Path = TEMPLATES_DIR) -> None:
        if default_locale not in LOCALES:
            raise ValueError(f"unknown locale {default_locale!r}; expected one of {LOCALES}")
        self.default_locale = default_locale
        self.env = _environment(templates_dir, _finalize)
        self.env.filters.update(clip=clip, duration=duration, bar=text_bar, upfirst=upfirst)
        self.env.filters.update(when=when, pct=pct, num=number, plain=plain)
        self.env.filters.update(no_addresses=without_addresses, hhmm=clock_time)
        self.env.globals.update(mention=mention, date=slack_date, when=when, pct=pct)
        # Markdown documents are read outside Slack: their values are escaped for Markdown.
        self.docs = _environment(templates_dir, _md_finalize)
        self.docs.filters.update(
            clip=clip,
            duration=duration,
            when=when,
            pct=pct,
            num=number,
            plain=plain,
            md_cell=md_cell,
            md_code=md_code,
            md_url=md_url,
        )
        self.docs.globals.update(when=when, pct=pct)
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

    def view(self, name: str, /, locale: str | None = None, **context: Any) -> dict[str, Any]:
        """A modal's view (views.open) from ``templates/blocks/<name>.json.j2``."""
        locale = locale or self.default_locale

        def t(inner: str, **kw: Any) -> Markup:
            return Markup(self.text(inner, locale, **{**context, **kw}))

        rendered = self.env.get_template(f"blocks/{name}.json.j2").render(t=t, **context)
        try:
            view: dict[str, Any] = json.loads(rendered)
        except json.JSONDecodeError as error:
            raise ValueError(f"template blocks/{name} rendered invalid JSON: {error}") from None
        view["blocks"] = [_enforce_limits(block) for block in view.get("blocks", [])]
        return view

    def document(self, name: str, /, locale: str | None = None, **context: Any) -> str:
        """A Markdown document from ``templates/<locale>/<name>.md.j2``, ending in one newline.

        Every ``{{ value }}`` is Markdown-escaped (``md_escape``), never Slack-escaped: the file
        is read outside Slack. Templates use ``md_cell`` to keep untrusted text inside one table
        cell and ``md_code``/``md_url`` for code spans and links.
        """
        locale = locale or self.default_locale
        if locale not in LOCALES:
            raise ValueError(f"unknown locale {locale!r}; expected one of {LOCALES}")
        template = self.docs.get_template(f"{locale}/{name}.md.j2")
        return template.render(locale=locale, **context).rstrip("\n") + "\n"

    def warm_up(self) -> None:
        """Compile every layout and every string now (a first message would otherwise pay)."""
        for step in self.warm_up_steps():
            step()

    def warm_up_steps(self) -> Iterator[Callable[[], object]]:
        """``warm_up`` one template at a time (about a millisecond each), so that a caller can
        step aside between them."""
        for template in sorted((TEMPLATES_DIR / "blocks").glob("*.json.j2")):
            yield partial(self.env.get_template, f"blocks/{template.name}")
        for locale, catalog in self.catalogs.items():
            for key in catalog:
                yield partial(self._string, locale, key)

    def _string(self, locale: str, key: str) -> Template:
        return _compiled(self, locale, key)


@cache
def shared_renderer(default_locale: str = "en") -> Renderer:
    """One Renderer per locale for the whole process: every runtime built in it (the sandbox's,
    one per test) shares its parsed catalogues and compiled templates. It holds nothing else:
    rendering reads only its arguments."""
    return Renderer(default_locale)


@lru_cache(maxsize=2048)
def _compiled(renderer: Renderer, locale: str, key: str) -> Template:
    catalog = renderer.catalogs[locale]
    if key not in catalog:
        raise KeyError(f"no text {key!r} in templates/{locale}/messages.yaml")
    return renderer.env.from_string(catalog[key])


def _load_catalog(templates_dir: Path, locale: str) -> dict[str, str]:
    text = (templates_dir / locale / "messages.yaml").read_text(encoding="utf-8")
    # libyaml's loader when PyYAML has it: ~10x faster, and every process reads both catalogues.
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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
