"""examples/github-actions/release.yml: a GitHub Actions workflow that checks the migration with
`python -m bot check-migration` and registers the candidate with `POST /ci/releases`. Pure:
parses the file and runs its check step's command on this repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from bot.ops.ci_releases import CiRelease

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / "examples" / "github-actions" / "release.yml"


def steps() -> list[dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert workflow["name"] and workflow[True]["push"]  # YAML 1.1 reads the `on:` key as True
    [job] = workflow["jobs"].values()
    assert job["runs-on"]
    return job["steps"]


def run_of(name_part: str) -> str:
    return next(s["run"] for s in steps() if name_part in s.get("name", ""))


def test_it_checks_the_migration_with_runbacks_cli() -> None:
    script = run_of("Check the migration")
    assert "python -m bot check-migration" in script and "release-migration.sql" in script
    assert '"$code" -eq 2' in script, "unknown fails the job"


def test_it_registers_the_candidate_with_the_bearer_token() -> None:
    script = run_of("Register the release candidate")
    assert re.search(r'curl .*-X POST "\$RUNBACK_URL/ci/releases"', script.replace("\\\n", " "))
    assert "Authorization: Bearer $RUNBACK_CI_TOKEN" in script
    assert "Content-Type: application/json" in script and "--fail-with-body" in script
    fields = set(re.findall(r"\b(service|image|commit|migration_sql|feature_flag):", script))
    assert fields == {"service", "image", "commit", "migration_sql", "feature_flag"}
    assert fields <= set(CiRelease.model_fields), "every field the endpoint accepts"


def test_the_check_command_it_runs_exists(tmp_path: Path) -> None:
    sql = tmp_path / "release-migration.sql"
    sql.write_text("ALTER TABLE reservas DROP COLUMN fecha;\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "bot", "check-migration", "--format", "json", str(sql)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and '"rule": "drop_column"' in done.stdout
