"""``python -m bot check-migration`` as CI runs it: a subprocess, exit codes, text, JSON, stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def check(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RUNBACK_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bot", "check-migration", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=env,
        timeout=60,
    )


@pytest.fixture
def sql_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "additive": "ALTER TABLE reservas ADD COLUMN notes VARCHAR(500);\n"
        "CREATE INDEX CONCURRENTLY idx ON reservas (fecha);\n",
        "destructive": "-- rename\nALTER TABLE reservas ADD COLUMN a int;\n"
        "ALTER TABLE reservas RENAME COLUMN fecha TO day;\n",
        "unknown": "ALTER TABLE t DROP COLUMN c;\nSELEC nonsense;\n",
        "mysql": "ALTER TABLE t MODIFY COLUMN c BIGINT NOT NULL;\n",
    }
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.sql"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def test_all_additive_exits_0(sql_files: dict[str, Path]) -> None:
    result = check(str(sql_files["additive"]))
    assert result.returncode == 0, result.stderr
    assert f"{sql_files['additive']}:1: ADDITIVE [add_column_nullable]" in result.stdout
    assert "2 statement(s): 2 additive, 0 destructive, 0 unknown." in result.stdout


def test_any_destructive_exits_1_with_the_runbooks_remedy(sql_files: dict[str, Path]) -> None:
    result = check(str(sql_files["additive"]), str(sql_files["destructive"]))
    assert result.returncode == 1, result.stderr
    assert f"{sql_files['destructive']}:3: DESTRUCTIVE [rename_column]" in result.stdout
    assert "feature flag" in result.stdout and "backup" in result.stdout


def test_any_unknown_exits_2(sql_files: dict[str, Path]) -> None:
    result = check(str(sql_files["destructive"]), str(sql_files["unknown"]))
    assert result.returncode == 2
    assert f"{sql_files['unknown']}:2: UNKNOWN [unparsable]" in result.stdout


def test_an_unreadable_file_exits_2_and_the_others_are_still_checked(
    sql_files: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.sql"
    result = check(str(missing), str(sql_files["additive"]), "--format", "json")
    assert result.returncode == 2
    rows = json.loads(result.stdout)
    assert rows[0]["file"] == str(missing) and rows[0]["rule"] == "unreadable"
    assert [row["verdict"] for row in rows[1:]] == ["additive", "additive"]


def test_json_shape(sql_files: dict[str, Path]) -> None:
    result = check("--format", "json", str(sql_files["additive"]), str(sql_files["destructive"]))
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert [(Path(r["file"]).name, r["line"], r["verdict"], r["rule"]) for r in rows] == [
        ("additive.sql", 1, "additive", "add_column_nullable"),
        ("additive.sql", 2, "additive", "create_index"),
        ("destructive.sql", 2, "additive", "add_column_nullable"),
        ("destructive.sql", 3, "destructive", "rename_column"),
    ]
    for row in rows:
        assert {"file", "line", "statement", "verdict", "rule", "why", "warnings"} <= row.keys()
    assert rows[3]["statement"] == "ALTER TABLE reservas RENAME COLUMN fecha TO day"
    assert "`fecha`" in rows[3]["why"] and "`day`" in rows[3]["why"]
    assert rows[3]["remedy"] and rows[0]["remedy"] is None


def test_stdin_dialect_warnings_and_locale() -> None:
    result = check(
        "--dialect", "mysql", "--format", "json", "--locale", "es", "-",
        stdin="CREATE INDEX i ON t (a);\nALTER TABLE t ADD UNIQUE KEY u (a);\n",
    )  # fmt: skip
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert [(r["file"], r["line"], r["rule"]) for r in rows] == [
        ("-", 1, "create_index"),
        ("-", 2, "add_unique_constraint"),
    ]
    assert rows[1]["why"].startswith("Restricción UNIQUE nueva en `t`")
    pg = check("--format", "json", "-", stdin="CREATE INDEX i ON t (a);")
    [row] = json.loads(pg.stdout)
    assert row["warnings"][0]["rule"] == "index_not_concurrent"
    assert "CONCURRENTLY" in row["warnings"][0]["why"]
    assert pg.returncode == 0  # a lock hazard is a warning beside the verdict, not a failure


def test_the_dialect_changes_the_verdict(sql_files: dict[str, Path]) -> None:
    assert check(str(sql_files["mysql"])).returncode == 2  # not PostgreSQL: unknown
    assert check("--dialect", "mysql", str(sql_files["mysql"])).returncode == 1


def test_the_locale_comes_from_app_yaml(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("locale: es\n", encoding="utf-8")
    result = check("-", stdin="DROP TABLE t;", cwd=tmp_path)
    assert "Elimina la tabla `t`" in result.stdout


def test_identifiers_are_shown_as_written() -> None:
    result = check("--format", "json", "-", stdin='ALTER TABLE "a<b&c" DROP COLUMN x;')
    [row] = json.loads(result.stdout)
    assert "`a<b&c`" in row["why"]


def test_bad_usage_exits_2() -> None:
    assert check().returncode == 2  # no FILE
    assert check("--dialect", "oracle", "x.sql").returncode == 2


def test_the_check_loads_no_slack_or_google_library() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bot", "check-migration", "-"],
        input="ALTER TABLE t ADD a int;",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0
    modules = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert "bot.policy.migrations" in modules
    loaded = {m.split(".")[0] for m in modules}
    assert not loaded & {"slack_sdk", "slack_bolt", "google", "grpc", "sqlalchemy"}
