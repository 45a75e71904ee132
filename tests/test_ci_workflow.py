"""examples/github-actions/release.yml: a GitHub Actions workflow that checks the migration with
`python -m bot check-migration` and registers the candidate with `POST /ci/releases`. Pure:
parses the file and runs its check step's command on this repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
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


def git(folder: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "ci",
        "GIT_AUTHOR_EMAIL": "ci@example.com",
        "GIT_COMMITTER_NAME": "ci",
        "GIT_COMMITTER_EMAIL": "ci@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=folder, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def commit(folder: Path, name: str, sql: str) -> str:
    path = folder / "migrations" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(sql, encoding="utf-8")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", f"add {name}")
    return git(folder, "rev-parse", "HEAD")


def new_migrations(folder: Path, before: str) -> tuple[list[str], str]:
    """Run the workflow's step as GitHub runs it (bash -e), with github.event.before."""
    script = run_of("The migrations this push adds")
    done = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=folder,
        env={**os.environ, "BEFORE": before},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    listed = (folder / "new-migrations.txt").read_text().split()
    return listed, (folder / "release-migration.sql").read_text()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def test_a_push_of_several_commits_carries_every_migration_they_add(repo: Path) -> None:
    before = commit(repo, "001_reservas.sql", "CREATE TABLE reservas (id int);\n")
    commit(repo, "002_drop_fecha.sql", "ALTER TABLE reservas DROP COLUMN fecha;\n")
    (repo / "README").write_text("docs\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "docs only")  # the push's last commit adds no migration
    listed, sql = new_migrations(repo, before)
    assert listed == ["migrations/002_drop_fecha.sql"]
    assert "DROP COLUMN fecha" in sql and "CREATE TABLE" not in sql


def test_a_new_branch_carries_all_its_migrations(repo: Path) -> None:
    commit(repo, "001_reservas.sql", "CREATE TABLE reservas (id int);\n")
    commit(repo, "002_index.sql", "CREATE INDEX r_id ON reservas (id);\n")
    listed, _ = new_migrations(repo, "0" * 40)
    assert listed == ["migrations/001_reservas.sql", "migrations/002_index.sql"]


def test_a_push_that_adds_no_migration_has_an_empty_one(repo: Path) -> None:
    before = commit(repo, "001_reservas.sql", "CREATE TABLE reservas (id int);\n")
    listed, sql = new_migrations(repo, before)
    assert listed == [] and sql == ""


def test_it_fetches_the_history_the_diff_needs() -> None:
    checkout = next(s for s in steps() if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0
