"""check-migration throughput on a generated 1,000-statement migration.

``python -m bench.migrations`` (also run by ``python -m bench.run``). Two figures:
- the policy alone (split, parse, classify every statement), in-process, median of runs;
- the CLI as CI runs it (``python -m bot check-migration FILE``), interpreter start included.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# A mix like real migrations: mostly additive, some destructive, a few lock hazards and
# comments, in both dialects' shared syntax where possible.
POSTGRES = [
    "-- add a column\nALTER TABLE reservas_{i} ADD COLUMN notes_{i} VARCHAR(500);",
    "CREATE INDEX CONCURRENTLY idx_{i} ON reservas_{i} (fecha);",
    "CREATE TABLE audit_{i} (id bigserial PRIMARY KEY, at timestamptz DEFAULT now(), entry text);",
    "ALTER TABLE reservas_{i} ADD COLUMN n_{i} int NOT NULL DEFAULT 0;",
    "ALTER TABLE reservas_{i} RENAME COLUMN fecha TO day_{i};",
    "ALTER TABLE reservas_{i} ADD CONSTRAINT fk_{i} FOREIGN KEY (u) REFERENCES u (id) NOT VALID;",
    "COMMENT ON COLUMN reservas_{i}.notes IS 'free text; user supplied';",
    "UPDATE reservas_{i} SET notes = '' WHERE notes IS NULL;",
    "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'v{i}';",
    "/* lock hazard */ CREATE INDEX idx_b_{i} ON reservas_{i} (b);",
]
MYSQL = [
    "ALTER TABLE reservas_{i} ADD COLUMN notes_{i} VARCHAR(500);",
    "CREATE INDEX idx_{i} ON reservas_{i} (fecha);",
    "CREATE TABLE audit_{i} (id BIGINT AUTO_INCREMENT PRIMARY KEY, entry TEXT) ENGINE=InnoDB;",
    "ALTER TABLE reservas_{i} ADD COLUMN n_{i} INT NOT NULL DEFAULT 0;",
    "ALTER TABLE reservas_{i} CHANGE COLUMN fecha day_{i} DATE;",
    "ALTER TABLE reservas_{i} ADD CONSTRAINT fk_{i} FOREIGN KEY (u) REFERENCES users (id);",
    "ALTER TABLE reservas_{i} MODIFY COLUMN notes TEXT;",
    "UPDATE reservas_{i} SET notes = '' WHERE notes IS NULL;",
    "-- a comment\nDELETE FROM sessions_{i} WHERE expired = 1;",
    "ALTER TABLE reservas_{i} DROP COLUMN legacy_{i};",
]


def generate(statements: int = 1000, dialect: str = "postgres") -> str:
    shapes = POSTGRES if dialect == "postgres" else MYSQL
    return "\n".join(shapes[i % len(shapes)].format(i=i) for i in range(statements)) + "\n"


def measure(statements: int = 1000, runs: int = 5) -> dict[str, Any]:
    from bot.policy.migrations import check_migration

    results: dict[str, Any] = {"statements": statements}
    for dialect in ("postgres", "mysql"):
        sql = generate(statements, dialect)
        check_migration(sql, dialect)  # type: ignore[arg-type]  # imports the parser once
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            findings = check_migration(sql, dialect)  # type: ignore[arg-type]
            times.append(time.perf_counter() - started)
        assert len(findings) == statements, (dialect, len(findings))
        median = statistics.median(times)
        results[dialect] = {
            "policy_s": median,
            "statements_per_s": statements / median,
            "cli_s": _cli_seconds(sql, dialect, runs),
        }
    return results


def _cli_seconds(sql: str, dialect: str, runs: int) -> float:
    with tempfile.TemporaryDirectory(prefix="runback-bench-") as tmp:
        path = Path(tmp) / "migration.sql"
        path.write_text(sql, encoding="utf-8")
        command = [sys.executable, "-m", "bot", "check-migration", "--dialect", dialect]
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            done = subprocess.run(
                [*command, "--format", "json", str(path)],
                cwd=ROOT,
                capture_output=True,
                check=False,
            )
            times.append(time.perf_counter() - started)
            if done.returncode not in (0, 1, 2):
                raise RuntimeError(done.stderr.decode(errors="replace"))
        return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.migrations", description=__doc__)
    parser.add_argument("--statements", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    results = measure(args.statements, args.runs)
    size, runs = args.statements, args.runs
    print(f"\ncheck-migration on a generated {size}-statement file (median of {runs}):")
    for dialect in ("postgres", "mysql"):
        r = results[dialect]
        print(
            f"  {dialect:8}  policy {r['policy_s'] * 1000:7.0f} ms "
            f"({r['statements_per_s']:,.0f} statements/s)   "
            f"CLI end to end {r['cli_s'] * 1000:7.0f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
