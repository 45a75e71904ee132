"""The postmortem draft: bot/ops/postmortem.py and templates/<locale>/postmortem.md.j2.

Golden files: ``sample_context()`` rendered in each locale must equal
``tests/golden/postmortem_<locale>.md`` byte for byte. After an intended change, regenerate
them and review the diff::

    UPDATE_GOLDEN=1 pytest tests/test_postmortem.py

Pure and fast: no network, no database.
"""

from __future__ import annotations

import copy
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.ops.postmortem import normalize_message, sample_context, top_errors
from bot.render import LOCALES, Renderer, md_cell, md_code, md_escape, md_url, pct, when

GOLDEN = Path(__file__).resolve().parent / "golden"
UNKNOWN = {"en": "_unknown_", "es": "_desconocido_"}
PEOPLE_SECTIONS = {
    "en": ["What failed", "Why it was not detected", "How to prevent it", "Corrective action"],
    "es": ["Qué falló", "Por qué no se detectó", "Cómo prevenir", "Acción correctiva"],
}
HOSTILE = "<!channel> <!here> <https://evil.example|click me> <@U0LUIS> & | pipe\nnew | line\r\n"
HUGE = HOSTILE + "`" + "x" * 10_000
RAW_MARKUP = ("<!channel>", "<!here>", "<https://evil", "<@U0LUIS>")
T0 = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer("en")


def render(renderer: Renderer, locale: str, context: dict[str, Any]) -> str:
    return renderer.document("postmortem", locale, **context)


def table_blocks(text: str) -> list[list[str]]:
    """Every Markdown table of ``text``: runs of consecutive lines starting with ``|``."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in [*text.split("\n"), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    return blocks


def cells(row: str) -> list[str]:
    """A GFM table row split on unescaped pipes (``\\|`` stays inside its cell)."""
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def assert_tables_intact(text: str) -> None:
    blocks = table_blocks(text)
    assert blocks, "no table rendered"
    for block in blocks:
        assert len(block) >= 2 and re.fullmatch(r"\|(-+:?\|)+", block[1])
        width = len(cells(block[0]))
        for row in block:
            assert row.endswith("|"), row
            assert len(cells(row)) == width, f"row breaks its table: {row[:200]!r}"


# --- golden files -----------------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
def test_sample_matches_golden(renderer: Renderer, locale: str) -> None:
    text = render(renderer, locale, sample_context())
    path = GOLDEN / f"postmortem_{locale}.md"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
    assert path.exists(), f"missing {path}; run UPDATE_GOLDEN=1 pytest {__file__}"
    assert text.encode("utf-8") == path.read_bytes()


@pytest.mark.parametrize("locale", LOCALES)
def test_sample_renders_every_fact(renderer: Renderer, locale: str) -> None:
    context = sample_context()
    text = render(renderer, locale, context)
    assert_tables_intact(text)
    assert text.endswith("._\n")  # one final newline
    assert UNKNOWN[locale] not in text.split("## ")[2]  # every fact of the sample is known
    for fact in (
        "inc-20261127-0042",
        "0.nk3f9x2a1b7q",
        "`wa-backend-00003`",
        "`wa-backend-00002`",
        "wa-backend:v1.2.0",
        "wa-backend:v1.1.0",
        "`U0ANA`",
        "`op-7f3a`",
        "run.googleapis.com/request_count",
        "`0.021`",
        "`0.01`",
        "2026-11-27 21:03:10 UTC",
        "2026-11-27 21:20:05 UTC",
        "32m (1890 s)",
        "6m (386 s)",
        "7.14%",
        "0.31%",
        "2340 ms",
        "412.5 ms",
        "1204",
        "| 5 | ERROR | `timeout after Nms for order N` |",
    ):
        assert fact in text, fact
    assert "<@" not in text  # Slack ids are shown as plain ids, never as mentions
    assert "](https://console.cloud.google.com/monitoring/alerting/incidents/" in text


# --- missing facts ------------------------------------------------------------------------------


def sparse_context() -> dict[str, Any]:
    context = sample_context()
    context.update(
        rollback=None,
        metrics_at_trigger=None,
        metrics_after=None,
        timeline=[],
        top_errors=[],
        time_to_detect_s=None,
        time_to_mitigate_s=None,
    )
    context["incident"].update(
        external_id="",
        policy_name="",
        condition_name="",
        metric_type="",
        observed_value="",
        threshold_value="",
        url="",
        summary="",
        started_at=None,
        mitigated_at=None,
        resolved_at=None,
        verdict="",
        reasons=[],
    )
    return context


@pytest.mark.parametrize("locale", LOCALES)
def test_missing_facts_are_unknown_never_guessed(renderer: Renderer, locale: str) -> None:
    text = render(renderer, locale, sparse_context())
    assert_tables_intact(text)
    unknown = UNKNOWN[locale]
    facts = table_blocks(text.split("\n## ")[1])[0][2:]
    known = [row for row in facts if unknown not in row]
    assert len(facts) == 21
    assert [cells(row)[1].strip() for row in known] == [
        "`wa-backend`",
        "production",
        "2026-11-27 21:04:05 UTC",  # received_at: the only time that is always known
    ]
    assert f"{unknown}: Runback" in text  # the empty timeline
    metrics = text.split("\n## ")[3]
    assert metrics.count(unknown) == 12  # 6 rows x 2 windows
    assert ("_None recorded._" if locale == "en" else "_Ninguno registrado._") in text
    assert "wa-backend" in text and "2026-11-27 21:04:05 UTC" in text  # what is known stays


@pytest.mark.parametrize("locale", LOCALES)
def test_partial_facts(renderer: Renderer, locale: str) -> None:
    context = sample_context()
    rollback = context["rollback"]
    rollback.update(requested_by="runback", approved_by="", automatic=True, emergency=False)
    rollback["from"].update(image="", created=None)
    context["metrics_after"] = None
    context["metrics_at_trigger"].update(error_rate=None, p95_ms=None)
    text = render(renderer, locale, context)
    assert_tables_intact(text)
    automatic = "Runback (automatic)" if locale == "en" else "Runback (automático)"
    assert f"| {automatic} |" in text
    self_approved = "self-approved" if locale == "en" else "autoaprobado"
    assert f"| {self_approved} |" in text
    unknown = UNKNOWN[locale]
    assert f"`wa-backend-00003` · {'image' if locale == 'en' else 'imagen'} {unknown}" in text
    # the intro's legend; image, created; the window after; error rate and P95 at trigger
    assert text.count(unknown) == 1 + 2 + 6 + 2


@pytest.mark.parametrize("locale", LOCALES)
def test_every_timeline_kind_has_a_sentence(renderer: Renderer, locale: str) -> None:
    kinds = {
        "alert_received": {},
        "judged": {"verdict": "inconclusive", "error_rate": None, "p95_ms": None, "requests": 3},
        "observe_started": {"until": T0},
        "acknowledged": {},
        "rollback_requested": {"target": "wa-backend-00002"},
        "approved": {},
        "traffic_shifted": {},
        "healthz_verified": {},
        "rollback_failed": {"code": "healthz_failed"},
        "mitigated": {},
        "alert_closed": {},
        "resolved": {},
        "brand_new_kind": {"nested": {"a": 1}},
    }
    context = sample_context()
    context["timeline"] = [
        {"at": T0, "kind": kind, "actor": actor, "detail": detail}
        for (kind, detail), actor in zip(kinds.items(), ["runback", "U0LUIS", ""] * 5, strict=False)
    ]
    text = render(renderer, locale, context)
    assert_tables_intact(text)
    timeline = text.split("\n## ")[2]
    rows = [row for row in timeline.split("\n") if row.startswith("| 2026")]
    assert len(rows) == len(kinds)
    for row, kind in zip(rows, kinds, strict=True):
        event = cells(row)[1].strip()
        if kind == "brand_new_kind":
            assert event == "`brand_new_kind`"  # shown by name, not dropped
        else:
            assert event != f"`{kind}`" and event[0].isupper(), event
    assert ("no concluyente" if locale == "es" else "**inconclusive**") in timeline
    assert "`healthz_failed`" in timeline and "2026-11-27 21:00:00 UTC" in timeline
    assert "| Runback |" in rows[0] and "| `U0LUIS` |" in rows[1]
    assert f"| {UNKNOWN[locale]} |" in rows[2]


# --- hostile text ---------------------------------------------------------------------------


def hostile_context() -> dict[str, Any]:
    context = sample_context()
    incident = context["incident"]
    for key in ("id", "service", "environment", "policy_name", "condition_name", "metric_type"):
        incident[key] = HOSTILE
    incident.update(
        summary=HUGE,
        observed_value=HOSTILE,
        threshold_value=HOSTILE,
        url="javascript:alert(1)|x",
        reasons=[HOSTILE],
        verdict=HOSTILE,
    )
    context["rollback"].update(id=HOSTILE, requested_by=HOSTILE, approved_by=HOSTILE, state=HOSTILE)
    context["rollback"]["from"].update(revision=HOSTILE, image=HUGE)
    context["timeline"] = [
        {
            "at": T0,
            "kind": HOSTILE,
            "actor": HOSTILE,
            "detail": {"reason": HUGE, "target": HOSTILE, HOSTILE: HOSTILE, "verdict": HOSTILE},
        }
    ]
    context["metrics_at_trigger"]["revision"] = HOSTILE
    context["top_errors"] = [
        {"message": HUGE, "count": 3, "example": HUGE, "severity": HOSTILE},
        *top_errors([{"textPayload": HUGE, "severity": "ERROR"}]),
    ]
    return context


@pytest.mark.parametrize("locale", LOCALES)
def test_hostile_text_is_escaped_and_keeps_tables(renderer: Renderer, locale: str) -> None:
    text = render(renderer, locale, hostile_context())
    prose = re.sub(r"(?<!\\)(`+).*?\1(?!`)", "", text)  # code spans: text as is, inert
    for raw in RAW_MARKUP:  # never unescaped outside a code span
        assert not re.search(r"(?<!\\)" + re.escape(raw), prose)
    assert "\\<!channel\\>" in text and "&lt;" not in text  # Markdown escapes, not Slack's
    assert "javascript:" not in text.replace("`javascript:alert(1)\\|x`", "")  # never a link
    assert "](javascript" not in text
    assert_tables_intact(text)
    for line in text.split("\n"):
        assert len(line) < 4000, "untrusted text must be clipped"
        if line.startswith("|"):
            assert "new \\| line" in line or "new" not in line  # newlines joined, pipes escaped
    # the headings and sections around the hostile values are still there
    for heading in PEOPLE_SECTIONS[locale]:
        assert f"\n## {heading}\n" in text


def test_generated_at_naive_is_taken_as_utc(renderer: Renderer) -> None:
    context = sample_context()
    context["generated_at"] = datetime(2026, 11, 27, 21, 4, 5)
    assert "generated by Runback at 2026-11-27 21:04:05 UTC" in render(renderer, "en", context)


# --- people sections ----------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
def test_people_sections_are_empty_and_in_the_right_language(
    renderer: Renderer, locale: str
) -> None:
    text = render(renderer, locale, sample_context())
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings[-4:] == PEOPLE_SECTIONS[locale]
    other = PEOPLE_SECTIONS["es" if locale == "en" else "en"]
    assert not any(heading in text for heading in other)
    for heading in PEOPLE_SECTIONS[locale]:
        body = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0].strip()
        assert body.startswith("_") and body.endswith("_") and "\n" not in body  # one prompt
    draft = "**DRAFT** generated by Runback at" if locale == "en" else "**BORRADOR** generado"
    assert draft in text
    facts = "## Facts (recorded by Runback)" if locale == "en" else "## Hechos (registrados por"
    assert facts in text


def test_document_rejects_unknown_locale(renderer: Renderer) -> None:
    with pytest.raises(ValueError, match="unknown locale"):
        renderer.document("postmortem", "fr", **sample_context())


def test_document_uses_default_locale() -> None:
    text = Renderer("es").document("postmortem", **sample_context())
    assert text.startswith("# Borrador de postmortem: wa-backend")


def test_sample_context_is_not_shared() -> None:
    first = sample_context()
    pristine = copy.deepcopy(first)
    first["incident"]["service"] = "changed"
    assert sample_context() == pristine


# --- formatters -------------------------------------------------------------------------------


def test_formatters() -> None:
    assert when(datetime(2026, 11, 27, 21, 4, 5, tzinfo=UTC)) == "2026-11-27 21:04:05 UTC"
    assert when(None) == ""
    assert [pct(x) for x in (0.05, 0.01, 86 / 1204, 0.0, 1.0, 0.00001, None)] == [
        "5%",
        "1%",
        "7.14%",
        "0%",
        "100%",
        "0.001%",
        "",
    ]
    assert md_cell("a|b\nc\r\nd") == "a|b c d"
    assert md_escape("a|b <!x> *y* _z_ [l](u) & &amp; \\") == (
        "a\\|b \\<!x\\> \\*y\\* \\_z\\_ \\[l\\](u) & \\&amp; \\\\"
    )
    assert (
        md_escape("# title\n> quote\n- item\n10.5 ok") == "\\# title\n\\> quote\n\\- item\n10.5 ok"
    )
    assert md_code("x") == "`x`" and md_code("a`b") == "``a`b``" and md_code("`a") == "`` `a ``"
    assert md_code("a|b") == "`a\\|b`"
    assert md_code("") == "" and md_code(None) == ""
    assert md_url("https://x.example/a b(c)|d?e=1&f=2") == (
        "https://x.example/a%20b%28c%29%7Cd?e=1&f=2"
    )
    assert md_url("javascript:alert(1)") == "" and md_url("") == "" and md_url("//x") == ""


# --- top_errors -------------------------------------------------------------------------------


def text_entry(text: str, severity: str = "ERROR") -> dict[str, Any]:
    return {"textPayload": text, "severity": severity, "timestamp": "2026-11-27T21:05:00Z"}


def json_entry(severity: str = "ERROR", **payload: Any) -> dict[str, Any]:
    return {"jsonPayload": payload, "severity": severity, "resource": {"type": "cloud_run"}}


def test_top_errors_groups_volatile_parts() -> None:
    entries = [
        json_entry(message="timeout after 3012ms for order 8812"),
        json_entry(message="timeout after 2999ms for order 17"),
        text_entry("timeout after 3100ms for order 9"),
    ]
    assert top_errors(entries) == [
        {
            "message": "timeout after Nms for order N",
            "count": 3,
            "example": "timeout after 3012ms for order 8812",
            "severity": "ERROR",
        }
    ]


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("request 3fa85f64-5717-4562-b3fc-2c963f66afa6 failed", "request … failed"),
        ("trace 4bf92f3577b34da6a3ce929d0e0e4736 dropped", "trace … dropped"),
        ("bad pointer 0xDEADBEEF", "bad pointer …"),
        ("at 2026-11-27T21:04:05.123Z: retry 2/3", "at …: retry N/N"),
        ("latency 12.5 s over 2000", "latency N s over N"),
        ("utf8 decode error in v1 payload", "utf8 decode error in v1 payload"),
        ("  spaced   out  ", "spaced out"),
        ("deadbeef cafe", "deadbeef cafe"),  # words, not ids: no digit
    ],
)
def test_normalize_message(raw: str, normalised: str) -> None:
    assert normalize_message(raw) == normalised


def test_top_errors_message_sources_and_first_line() -> None:
    entries = [
        json_entry(message="from message", error="ignored", msg="ignored"),
        json_entry(error="from error"),
        json_entry(error={"message": "from nested error", "code": 13}),
        json_entry(msg="from msg"),
        {**json_entry(other=1), "textPayload": "from text"},
        text_entry("first line\nsecond line\n"),
        text_entry(
            'Traceback (most recent call last):\n  File "a.py", line 1\nValueError: bad 42\n'
        ),
        text_entry(""),
        text_entry("   \n  "),
        json_entry(message=""),
        json_entry(message=None),
        {"severity": "ERROR"},
        {"protoPayload": {"status": {}}},
    ]
    assert sorted(e["message"] for e in top_errors(entries, limit=20)) == [
        "ValueError: bad N",
        "first line",
        "from error",
        "from message",
        "from msg",
        "from nested error",
        "from text",
    ]


def test_top_errors_order_limit_and_severity() -> None:
    entries = [
        *[text_entry("b rare", "WARNING")],
        *[text_entry("c common", "ERROR")] * 2,
        text_entry("c common", "CRITICAL"),
        *[text_entry("a tied", "ERROR")] * 2,
        *[text_entry("z tied")] * 2,
        {"textPayload": "no severity"},
    ]
    result = top_errors(entries, limit=3)
    assert [(e["message"], e["count"]) for e in result] == [
        ("c common", 3),
        ("a tied", 2),
        ("z tied", 2),
    ]
    assert result[0]["severity"] == "CRITICAL"  # the most severe of the group
    assert top_errors(entries, limit=0) == []
    assert top_errors([]) == []
    assert top_errors(entries, limit=10)[-1] == {
        "message": "no severity",
        "count": 1,
        "example": "no severity",
        "severity": "DEFAULT",
    }
    assert len(top_errors([text_entry(f"distinct {c}") for c in "abcdefgh"])) == 5  # default


def test_top_errors_keeps_the_first_raw_example() -> None:
    entries = [json_entry(message="order 1 failed"), json_entry(message="order 2 failed")]
    assert top_errors(entries)[0]["example"] == "order 1 failed"
