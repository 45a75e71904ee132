"""``python -m bot check-migration``: the migration check for CI (see docs/migration-check.md).

Loads no Slack or Google library: it runs in a CI step before anything is deployed.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from bot.policy.migrations import (
    MAX_SQL_CHARS,
    Dialect,
    Finding,
    Verdict,
    check_migration,
    exit_code,
)
from bot.render import LOCALES, Renderer

UNREADABLE = 2


@dataclass(frozen=True)
class FileReport:
    file: str
    findings: list[Finding]
    error: str | None = None


def run(
    files: Sequence[str],
    dialect: Dialect = "postgres",
    output: str = "text",
    locale: str | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
) -> int:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    renderer = Renderer(locale or team_locale())
    reports = [_check_file(renderer, name, dialect, stdin) for name in files]
    if output == "json":
        stdout.write(json.dumps(as_json(renderer, reports), ensure_ascii=False, indent=2) + "\n")
    else:
        stdout.write(as_text(renderer, reports))
    codes = [UNREADABLE if r.error else exit_code(r.findings) for r in reports]
    return max(codes, default=0)


def team_locale() -> str:
    """The ``locale`` of app.yaml when it can be read, else English: the check must run in a
    CI job that has no configuration at all."""
    path = Path(os.environ.get("RUNBACK_CONFIG", "app.yaml"))
    try:
        locale = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("locale")
    except (OSError, yaml.YAMLError, AttributeError):
        return "en"
    return locale if locale in LOCALES else "en"


def _check_file(renderer: Renderer, name: str, dialect: Dialect, stdin: TextIO) -> FileReport:
    try:
        if name == "-":
            sql = stdin.read(MAX_SQL_CHARS + 1)
        else:
            with Path(name).open(encoding="utf-8") as file:
                sql = file.read(MAX_SQL_CHARS + 1)
    except (OSError, UnicodeDecodeError) as error:
        return FileReport(name, [], getattr(error, "strerror", None) or str(error))
    if len(sql) > MAX_SQL_CHARS:
        too_long = renderer.text("migration.too_long", limit=f"{MAX_SQL_CHARS:,}")
        return FileReport(name, [], plain(too_long))
    return FileReport(name, check_migration(sql, dialect))


def why(renderer: Renderer, finding: Finding) -> str:
    return plain(renderer.text(f"migration.rule.{finding.rule}", **finding.data))


def remedy(renderer: Renderer, finding: Finding) -> str | None:
    if finding.verdict == Verdict.ADDITIVE:
        return None
    return plain(renderer.text(f"migration.remedy.{finding.verdict}"))


def warnings(renderer: Renderer, finding: Finding) -> list[dict[str, str]]:
    return [
        {"rule": w, "why": plain(renderer.text(f"migration.warning.{w}"))} for w in finding.warnings
    ]


def as_json(renderer: Renderer, reports: list[FileReport]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for report in reports:
        if report.error:
            rows.append(
                {
                    "file": report.file,
                    "line": None,
                    "statement": None,
                    "verdict": str(Verdict.UNKNOWN),
                    "rule": "unreadable",
                    "why": _unreadable(renderer, report),
                    "warnings": [],
                    "remedy": None,
                }
            )
        for f in report.findings:
            rows.append(
                {
                    "file": report.file,
                    "line": f.line,
                    "statement": f.statement,
                    "verdict": str(f.verdict),
                    "rule": f.rule,
                    "why": why(renderer, f),
                    "warnings": warnings(renderer, f),
                    "remedy": remedy(renderer, f),
                }
            )
    return rows


def as_text(renderer: Renderer, reports: list[FileReport]) -> str:
    lines: list[str] = []
    counts: Counter[str] = Counter()
    for report in reports:
        if report.error:
            lines.append(_unreadable(renderer, report))
        for f in report.findings:
            counts[f.verdict] += 1
            verdict = plain(renderer.text(f"migration.verdict.{f.verdict}"))
            lines.append(
                plain(
                    renderer.text(
                        "migration.text_line",
                        file=report.file,
                        line=f.line,
                        verdict=verdict,
                        rule=f.rule,
                        why=why(renderer, f),
                    )
                )
            )
            lines += [f"    {w['why']}" for w in warnings(renderer, f)]
            advice = remedy(renderer, f)
            if advice:
                lines.append(f"    {advice}")
    total = sum(counts.values())
    summary = renderer.text("migration.summary", total=total, **_counts(counts))
    return "\n".join([*lines, plain(summary)]) + "\n"


def _counts(counts: Counter[str]) -> dict[str, Any]:
    return {str(v): counts[v] for v in Verdict}


def _unreadable(renderer: Renderer, report: FileReport) -> str:
    return plain(renderer.text("migration.unreadable", file=report.file, error=report.error))


def plain(text: str) -> str:
    """Undo the templates' Slack escaping (``& < >``) for a terminal or a JSON reader."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
