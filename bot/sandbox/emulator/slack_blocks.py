"""Block Kit validation: every ``blocks`` array and every view goes through slack_sdk's own
models, plus the few rules they do not check, and what the models silently dropped is an error
(``[ERROR] ... [json-pointer:...]`` lines, as Slack writes them)."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.sandbox.emulator.slack_args import _is_empty

MAX_MESSAGE_BLOCKS = 50


def _compare(raw: Any, rendered: Any, where: str) -> list[str]:
    """What slack_sdk silently dropped: unknown nested types and unknown properties."""
    if rendered is None and raw is not None:
        kind = raw.get("type") if isinstance(raw, dict) else type(raw).__name__
        return [f"[ERROR] unsupported type {kind!r} [json-pointer:{where}]"]
    if isinstance(raw, dict) and isinstance(rendered, dict):
        problems: list[str] = []
        for key, value in raw.items():
            if key in rendered:
                problems += _compare(value, rendered[key], f"{where}/{key}")
            elif not _is_empty(value):
                problems.append(
                    f"[ERROR] invalid additional property: {key} [json-pointer:{where}]"
                )
        return problems
    if isinstance(raw, list) and isinstance(rendered, list) and len(raw) == len(rendered):
        return [
            p
            for i, pair in enumerate(zip(raw, rendered, strict=True))
            for p in _compare(*pair, f"{where}/{i}")
        ]
    return []


def _extra_rules(block: dict[str, Any], where: str) -> list[str]:
    """Slack rules that slack_sdk's models do not enforce."""
    kind = block.get("type")
    text = block.get("text")
    if kind == "header" and isinstance(text, dict) and text.get("type") != "plain_text":
        return [f"[ERROR] must be a plain_text object [json-pointer:{where}/text]"]
    if kind in ("actions", "context") and not block.get("elements"):
        return [f"[ERROR] must provide at least 1 element [json-pointer:{where}/elements]"]
    return []


def check_block(raw: Any, where: str) -> list[str]:
    """Problems with one block, as Slack-style ``[ERROR] ... [json-pointer:...]`` lines."""
    if not isinstance(raw, dict):
        return [f"[ERROR] must be an object [json-pointer:{where}]"]
    try:
        block = Block.parse(raw)
        if block is None:
            return [f"[ERROR] unknown block type {raw.get('type')!r} [json-pointer:{where}]"]
        rendered = block.to_dict()
    except Exception as exc:  # the models raise TypeError/KeyError/SlackObjectFormationError
        return [f"[ERROR] {type(exc).__name__}: {exc} [json-pointer:{where}]"]
    return _extra_rules(raw, where) + _compare(raw, rendered, where)


def check_blocks(raw: Any, where: str = "/blocks", limit: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    if not isinstance(raw, list):
        return [f"[ERROR] must be an array [json-pointer:{where}]"]
    problems = [f"[ERROR] no more than {limit} items allowed [json-pointer:{where}]"]
    if len(raw) <= limit:
        problems = []
    for i, block in enumerate(raw):
        problems += check_block(block, f"{where}/{i}")
    return problems


def check_view(raw: Any) -> list[str]:
    if not isinstance(raw, dict):
        return ["[ERROR] must be an object [json-pointer:/view]"]
    problems = check_blocks(raw.get("blocks") or [], "/view/blocks", limit=100)
    if raw.get("type") == "modal" and not raw.get("title"):
        problems.append("[ERROR] missing required field: title [json-pointer:/view]")
    blocks = raw.get("blocks") or []
    has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
    if raw.get("type") == "modal" and has_input and not raw.get("submit"):
        problems.append(
            "[ERROR] must provide a submit property when an input block is present "
            "[json-pointer:/view]"
        )
    try:
        rendered = View(**raw).to_dict()
    except Exception as exc:
        return [*problems, f"[ERROR] {type(exc).__name__}: {exc} [json-pointer:/view]"]
    top = {k: v for k, v in raw.items() if k != "blocks"}
    return problems + _compare(top, {k: v for k, v in rendered.items() if k != "blocks"}, "/view")
