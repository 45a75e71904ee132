"""The migration check's policy: one verdict per statement, by rule, in both dialects."""

from __future__ import annotations

import pytest

from bot.policy.migrations import Verdict, check_migration, exit_code, worst
from bot.render import LOCALES, Renderer

A, D, U = Verdict.ADDITIVE, Verdict.DESTRUCTIVE, Verdict.UNKNOWN

# (sql, verdict, rule, warnings) — PostgreSQL
POSTGRES = [
    ("ALTER TABLE reservas ADD COLUMN notes VARCHAR(500)", A, "add_column_nullable", ()),
    ("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0", A, "add_column_default", ()),
    ("ALTER TABLE t ADD COLUMN c text DEFAULT 'x'::text", A, "add_column_default", ()),
    ("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()", A, "add_column_default", ()),
    ("ALTER TABLE t ADD COLUMN c date DEFAULT CURRENT_DATE", A, "add_column_default", ()),
    (
        "ALTER TABLE t ADD COLUMN c uuid NOT NULL DEFAULT gen_random_uuid()",
        A,
        "add_column_default",
        ("table_rewrite",),
    ),
    ("ALTER TABLE t ADD COLUMN id bigserial", A, "add_column_generated", ()),
    ("ALTER TABLE t ADD COLUMN n int GENERATED ALWAYS AS IDENTITY", A, "add_column_generated", ()),
    (
        "ALTER TABLE t ADD COLUMN n int GENERATED ALWAYS AS (a * 2) STORED",
        A,
        "add_column_generated",
        ("table_rewrite",),
    ),
    ("ALTER TABLE t ADD COLUMN c int NOT NULL", D, "add_column_not_null", ()),
    ("ALTER TABLE t ADD COLUMN c int PRIMARY KEY", D, "add_column_not_null", ()),
    ("ALTER TABLE t ADD COLUMN c int CHECK (c > 0)", D, "add_check_constraint", ()),
    ("CREATE TABLE audit_log (id serial PRIMARY KEY, at timestamptz)", A, "create_table", ()),
    ("CREATE TABLE copy AS SELECT * FROM t", A, "create_table", ()),
    (
        "CREATE INDEX idx_reservas_date ON reservas(fecha)",
        A,
        "create_index",
        ("index_not_concurrent",),
    ),
    ("CREATE INDEX CONCURRENTLY i ON t (a)", A, "create_index", ()),
    ("CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)", D, "unique_index", ()),
    ("CREATE UNIQUE INDEX i ON t (a)", D, "unique_index", ("index_not_concurrent",)),
    ("CREATE VIEW v AS SELECT a FROM t", A, "create_view", ()),
    ("CREATE OR REPLACE VIEW v AS SELECT a, b FROM t", A, "create_view", ()),
    ("CREATE SEQUENCE s START 1", A, "create_sequence", ()),
    ("COMMENT ON COLUMN t.a IS 'the a; really'", A, "comment", ()),
    ("CREATE TYPE mood AS ENUM ('sad', 'ok')", A, "create_type", ()),
    ("ALTER TYPE mood ADD VALUE 'happy'", A, "add_enum_value", ()),
    ("ALTER TYPE mood ADD VALUE IF NOT EXISTS 'happy' AFTER 'ok'", A, "add_enum_value", ()),
    ("ALTER TYPE mood RENAME VALUE 'ok' TO 'fine'", D, "rename_enum_value", ()),
    ("CREATE SCHEMA reporting", A, "create_schema", ()),
    ("CREATE EXTENSION IF NOT EXISTS pg_trgm", A, "create_extension", ()),
    ("ALTER TABLE t ALTER COLUMN c SET DEFAULT 1", A, "set_default", ()),
    ("ALTER TABLE t VALIDATE CONSTRAINT fk", A, "validate_constraint", ()),
    ("ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX i", A, "constraint_using_index", ()),
    ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql", A, "create_function", ()),
    ("INSERT INTO settings (k, v) VALUES ('a', 'b')", A, "insert", ()),
    ("UPDATE t SET a = 0 WHERE a IS NULL", A, "data_change", ()),
    ("DELETE FROM t WHERE id = 1", A, "data_change", ()),
    ("BEGIN", A, "no_schema_change", ()),
    ("COMMIT", A, "no_schema_change", ()),
    ("SET lock_timeout = '2s'", A, "no_schema_change", ()),
    ("ALTER TABLE t DROP COLUMN c", D, "drop_column", ()),
    ("ALTER TABLE t RENAME COLUMN a TO b", D, "rename_column", ()),
    ("ALTER TABLE t RENAME TO u", D, "rename_table", ()),
    ("ALTER INDEX i RENAME TO j", D, "rename_object", ()),
    ("ALTER TABLE t SET SCHEMA archive", D, "rename_object", ()),
    (
        "ALTER TABLE t ALTER COLUMN c TYPE bigint USING c::bigint",
        D,
        "change_column_type",
        ("table_rewrite",),
    ),
    (
        "ALTER TABLE t ALTER COLUMN c SET DATA TYPE text",
        D,
        "change_column_type",
        ("table_rewrite",),
    ),
    ("ALTER TABLE t ALTER COLUMN c SET NOT NULL", D, "set_not_null", ("full_scan_under_lock",)),
    ("ALTER TABLE t ALTER COLUMN c DROP NOT NULL", D, "drop_not_null", ()),
    ("ALTER TABLE t ALTER COLUMN c DROP DEFAULT", D, "drop_default", ()),
    (
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u(id)",
        D,
        "add_foreign_key",
        ("fk_without_not_valid",),
    ),
    (
        "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u(id) NOT VALID",
        D,
        "add_foreign_key",
        (),
    ),
    (
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)",
        D,
        "add_check_constraint",
        ("check_without_not_valid",),
    ),
    ("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID", D, "add_check_constraint", ()),
    (
        "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)",
        D,
        "add_unique_constraint",
        ("index_under_lock",),
    ),
    ("ALTER TABLE t ADD PRIMARY KEY (id)", D, "add_primary_key", ("index_under_lock",)),
    (
        "ALTER TABLE t ADD CONSTRAINT x EXCLUDE USING gist (r WITH &&)",
        D,
        "add_exclusion_constraint",
        ("index_under_lock",),
    ),
    ("ALTER TABLE t DROP CONSTRAINT fk", D, "drop_constraint", ()),
    ("ALTER TABLE IF EXISTS ONLY t DROP CONSTRAINT IF EXISTS fk", D, "drop_constraint", ()),
    ("DROP TABLE reservas", D, "drop_table", ()),
    ("DROP VIEW v", D, "drop_view", ()),
    ("DROP MATERIALIZED VIEW mv", D, "drop_view", ()),
    ("DROP INDEX i", D, "drop_index", ("index_not_concurrent",)),
    ("DROP INDEX CONCURRENTLY i", D, "drop_index", ()),
    ("DROP FUNCTION f(int)", D, "drop_function", ()),
    ("DROP PROCEDURE p()", D, "drop_function", ()),
    ("DROP SCHEMA s CASCADE", D, "drop_schema", ()),
    ("DROP TYPE mood", D, "drop_object", ()),
    ("DROP SEQUENCE s", D, "drop_object", ()),
    ("TRUNCATE t", D, "truncate", ()),
    ("TRUNCATE TABLE a, b", D, "truncate", ()),
    ("DELETE FROM t", D, "delete_without_where", ()),
    ("UPDATE t SET a = 1", D, "update_without_where", ()),
    ("ALTER TABLE t ADD a int, DROP COLUMN b", D, "drop_column", ()),
    (
        "CREATE OR REPLACE FUNCTION f() RETURNS int AS $$ SELECT 2 $$ LANGUAGE sql",
        U,
        "replace_function",
        (),
    ),
    ("SELEC 1", U, "unparsable", ()),
    ("ALTER TABLE t ADD COLUMN", U, "unparsable", ()),
    ("SELECT set_config('search_path', '', false)", U, "unrecognised", ()),
    ("DO $$ BEGIN DROP TABLE t; END $$", U, "unrecognised", ()),
    (
        "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()",
        U,
        "unrecognised",
        (),
    ),
    ("ALTER TABLE t DISABLE TRIGGER ALL", U, "unrecognised", ()),
    # MySQL syntax is not PostgreSQL: never a pass
    ("ALTER TABLE t MODIFY COLUMN c BIGINT", U, "unparsable", ()),
]

# (sql, verdict, rule) — MySQL
MYSQL = [
    ("ALTER TABLE reservas ADD COLUMN notes VARCHAR(500)", A, "add_column_nullable"),
    ("ALTER TABLE t ADD COLUMN c INT NULL", A, "add_column_nullable"),
    ("ALTER TABLE t ADD COLUMN c INT NOT NULL DEFAULT 0", A, "add_column_default"),
    (
        "ALTER TABLE t ADD COLUMN c INT NOT NULL DEFAULT 0, ALGORITHM=INSTANT",
        A,
        "add_column_default",
    ),
    ("ALTER TABLE t ADD COLUMN id INT AUTO_INCREMENT PRIMARY KEY", A, "add_column_generated"),
    ("ALTER TABLE t ADD COLUMN c INT NOT NULL", D, "add_column_not_null"),
    ("ALTER TABLE t ADD COLUMN c INT PRIMARY KEY", D, "add_column_not_null"),
    ("ALTER TABLE t ADD COLUMN c INT CHECK (c > 0)", D, "add_check_constraint"),
    ("CREATE TABLE audit_log (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB", A, "create_table"),
    ("CREATE INDEX i ON t (a)", A, "create_index"),
    ("ALTER TABLE t ADD INDEX i (a)", A, "create_index"),
    ("CREATE UNIQUE INDEX i ON t (a)", D, "unique_index"),
    ("CREATE OR REPLACE VIEW v AS SELECT 1", A, "create_view"),
    ("CREATE DATABASE reporting", A, "create_schema"),
    ("ALTER TABLE t ALTER COLUMN c SET DEFAULT 1", A, "set_default"),
    ("INSERT INTO t VALUES (1)", A, "insert"),
    ("UPDATE t SET a = 1 WHERE id = 2", A, "data_change"),
    ("DELETE FROM t WHERE id = 2", A, "data_change"),
    ("SET foreign_key_checks = 0", A, "no_schema_change"),
    ("START TRANSACTION", A, "no_schema_change"),
    ("COMMIT", A, "no_schema_change"),
    ("ALTER TABLE t DROP COLUMN c", D, "drop_column"),
    ("ALTER TABLE t RENAME COLUMN a TO b", D, "rename_column"),
    ("ALTER TABLE t CHANGE COLUMN a b INT", D, "rename_column"),
    ("ALTER TABLE t CHANGE a a BIGINT", D, "change_column_type"),
    ("ALTER TABLE t MODIFY COLUMN c BIGINT NOT NULL", D, "change_column_type"),
    ("ALTER TABLE t RENAME TO u", D, "rename_table"),
    ("ALTER TABLE t ALTER COLUMN c DROP DEFAULT", D, "drop_default"),
    ("ALTER TABLE t ADD UNIQUE KEY u (a)", D, "add_unique_constraint"),
    ("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)", D, "add_unique_constraint"),
    ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u(id)", D, "add_foreign_key"),
    ("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)", D, "add_check_constraint"),
    ("ALTER TABLE t ADD PRIMARY KEY (a)", D, "add_primary_key"),
    ("ALTER TABLE t DROP FOREIGN KEY fk", D, "drop_constraint"),
    ("ALTER TABLE t DROP INDEX i", D, "drop_index"),
    ("DROP INDEX i ON t", D, "drop_index"),
    ("DROP TABLE t", D, "drop_table"),
    ("DROP VIEW v", D, "drop_view"),
    ("DROP FUNCTION f", D, "drop_function"),
    ("DROP PROCEDURE p", D, "drop_function"),
    ("DROP DATABASE d", D, "drop_schema"),
    ("DROP SCHEMA s", D, "drop_schema"),
    ("TRUNCATE TABLE t", D, "truncate"),
    ("DELETE FROM t", D, "delete_without_where"),
    ("UPDATE t SET a = 1", D, "update_without_where"),
    ("RENAME TABLE a TO b", D, "rename_table"),
    ("RENAME TABLE a TO b, c TO d", D, "rename_table"),
    ("RENAME USER a TO b", U, "unrecognised"),
    ("CREATE INDEX i ON t (a) ALGORITHM=INPLACE LOCK=NONE", U, "unrecognised"),
    ("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW SET NEW.a = 1", U, "unrecognised"),
    ("ALTER TABLE t ADD COLUMN", U, "unrecognised"),  # sqlglot gives up: a Command
    ("CREATE TABLE t (a INT", U, "unparsable"),
    ("INSERT INTO t VALUES (", U, "unparsable"),
    ("SELECT " + "(" * 200 + "1" + ")" * 200, U, "too_nested"),  # past sqlglot's recursion
]


@pytest.mark.parametrize(
    ("sql", "verdict", "rule", "warnings"), POSTGRES, ids=lambda v: str(v)[:60]
)
def test_postgres_rules(sql: str, verdict: Verdict, rule: str, warnings: tuple[str, ...]) -> None:
    [finding] = check_migration(sql + ";", "postgres")
    assert (finding.verdict, finding.rule, finding.warnings) == (verdict, rule, warnings)
    assert finding.statement == sql


@pytest.mark.parametrize(("sql", "verdict", "rule"), MYSQL, ids=lambda v: str(v)[:60])
def test_mysql_rules(sql: str, verdict: Verdict, rule: str) -> None:
    [finding] = check_migration(sql + ";", "mysql")
    assert (finding.verdict, finding.rule) == (verdict, rule)
    assert finding.statement == sql


@pytest.mark.parametrize(
    ("sql", "warnings"),
    [
        ("ALTER TABLE t MODIFY COLUMN c BIGINT", ("table_copy",)),
        ("ALTER TABLE t ALTER COLUMN c SET DATA TYPE BIGINT", ("table_copy",)),
        ("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u(id)", ("table_copy",)),
        ("ALTER TABLE t ADD INDEX i (a)", ()),  # InnoDB builds secondary indexes online
        ("CREATE INDEX i ON t (a)", ()),
    ],
)
def test_mysql_lock_warnings(sql: str, warnings: tuple[str, ...]) -> None:
    [finding] = check_migration(sql, "mysql")
    assert finding.warnings == warnings


def test_the_runbooks_examples() -> None:
    sql = """
-- ✅ Seguro: agregar columna
ALTER TABLE reservas ADD COLUMN notes VARCHAR(500);

-- ✅ Seguro: nuevo índice
CREATE INDEX idx_reservas_date ON reservas(fecha);

-- ✅ Seguro: nueva tabla
CREATE TABLE audit_log (id bigserial PRIMARY KEY, entry text);
"""
    findings = check_migration(sql)
    assert [(f.line, f.verdict) for f in findings] == [(3, A), (6, A), (9, A)]
    assert exit_code(findings) == 0


def test_line_numbers_comments_and_semicolons() -> None:
    sql = (
        "/* header; with a semicolon */\n"
        "ALTER TABLE t ADD COLUMN a text DEFAULT 'x;y'; -- trailing; comment\n"
        "\n"
        "COMMENT ON TABLE t IS $$dollar; quoted$$;;\n"
        "ALTER TABLE t\n"
        "  DROP COLUMN b;\n"
        "ALTER TABLE ñandú RENAME COLUMN é TO e;ALTER TABLE t ADD COLUMN z int\n"
        "-- no semicolon at the end\n"
    )
    findings = check_migration(sql)
    assert [(f.line, f.rule) for f in findings] == [
        (2, "add_column_default"),
        (4, "comment"),
        (5, "drop_column"),
        (7, "rename_column"),
        (7, "add_column_nullable"),
    ]
    assert findings[2].statement == "ALTER TABLE t\n  DROP COLUMN b"
    assert findings[3].data == {"table": "ñandú", "old": "é", "new": "e", "kind": "column"}


def test_mysql_line_numbers_and_backticks() -> None:
    sql = "# a MySQL comment\nALTER TABLE `t` ADD COLUMN `a` INT;\n\n/* x; */ DROP TABLE `t`;\n"
    findings = check_migration(sql, "mysql")
    assert [(f.line, f.verdict, f.data.get("name")) for f in findings] == [
        (2, A, None),
        (4, D, "t"),
    ]


def test_a_bad_statement_does_not_hide_the_others() -> None:
    findings = check_migration("ALTER TABLE t ADD a int;\nSELEC nonsense;\nDROP TABLE t;")
    assert [(f.line, f.verdict) for f in findings] == [(1, A), (2, U), (3, D)]
    assert exit_code(findings) == 2
    assert exit_code(findings[:1]) == 0
    assert exit_code([findings[0], findings[2]]) == 1


def test_an_unterminated_string_is_one_unknown() -> None:
    for dialect in ("postgres", "mysql"):
        [finding] = check_migration("ALTER TABLE t ADD a int;\nSELECT 'open", dialect)
        assert (finding.verdict, finding.rule) == (U, "unparsable")


@pytest.mark.parametrize("dialect", ["postgres", "mysql"])
def test_changes_to_a_table_created_in_the_same_migration_are_additive(dialect: str) -> None:
    sql = (
        "CREATE TABLE fresh (id int);\n"
        "ALTER TABLE fresh ADD COLUMN owner int NOT NULL;\n"
        "ALTER TABLE fresh ADD CONSTRAINT fk FOREIGN KEY (owner) REFERENCES users(id);\n"
        "CREATE UNIQUE INDEX fresh_owner ON fresh (owner);\n"
        "DROP TABLE fresh;\n"
        "ALTER TABLE old ADD COLUMN owner int NOT NULL;\n"
    )
    findings = check_migration(sql, dialect)  # type: ignore[arg-type]
    assert [f.verdict for f in findings] == [A, A, A, A, A, D]
    assert all(f.warnings == () for f in findings)


def test_empty_input_has_no_findings_and_passes() -> None:
    assert check_migration("  -- nothing here\n/* nor here */\n") == []
    assert exit_code([]) == 0


def test_worst_and_unknown_dialect() -> None:
    assert worst([A, D, A]) == D
    assert worst([D, U]) == U
    assert worst([]) == A
    with pytest.raises(ValueError, match="dialect"):
        check_migration("SELECT 1", "oracle")  # type: ignore[arg-type]


def _all_findings() -> list:
    findings = [check_migration(sql + ";")[0] for sql, *_ in POSTGRES]
    findings += [check_migration(sql + ";", "mysql")[0] for sql, *_ in MYSQL]
    for dialect in ("postgres", "mysql"):
        findings += check_migration("CREATE TABLE n (a int); ALTER TABLE n DROP COLUMN a", dialect)
    return findings


@pytest.mark.parametrize("locale", LOCALES)
def test_every_rule_and_warning_has_words_in_both_locales(locale: str) -> None:
    renderer = Renderer(locale)
    findings = _all_findings()
    for finding in findings:
        why = renderer.text(f"migration.rule.{finding.rule}", **finding.data)
        assert why and "{{" not in why
        for warning in finding.warnings:
            assert renderer.text(f"migration.warning.{warning}")
    rules = {
        key.split(".")[-1] for key in renderer.catalogs[locale] if key.startswith("migration.rule.")
    }
    assert rules == {f.rule for f in findings}  # each rule is tested, each tested rule has words
