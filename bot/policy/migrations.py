"""The migration check: after this migration, would the previous revision's code still work?

Each SQL statement gets one verdict, the rule that decided it, the facts the rule saw (table,
column, ...) and lock hazards as warnings. The words live in templates/ (``migration.*``);
this module returns ids and data only.

- ``additive``: old code keeps working (it ignores what is new), so rolling back past this
  migration is safe.
- ``destructive``: old code would fail or misbehave (a name it uses is gone, a type it parses
  changed, a write it makes is now refused). The runbook's remedy: feature flag, a tech lead's
  approval and a backup before the deploy.
- ``unknown``: not parsed or not recognised. Never a pass.

Parsers, chosen by the evidence (sqlglot 30.30 and pglast 8.7, both wheels on Python 3.11):
- PostgreSQL: pglast, which is PostgreSQL's own parser (libpg_query). sqlglot falls back to an
  opaque ``Command`` for ``ALTER TYPE ... ADD VALUE`` and ``ALTER TABLE ... VALIDATE
  CONSTRAINT``; pglast parses every form we classify, ``CONCURRENTLY`` and ``NOT VALID``
  included.
- MySQL: sqlglot (pglast is PostgreSQL only). What it cannot model comes back as an opaque
  ``Command``: ``RENAME TABLE a TO b`` is then read from MySQL's tokens, anything else (``CREATE
  INDEX ... ALGORITHM=``) is ``unknown``.

Statements are split on the dialect's own tokens (so ``;`` in strings, comments and
dollar quotes is not a split), then parsed one by one, so one bad statement is ``unknown``
without hiding the others. pglast's scanner-based ``split`` silently drops statements that
start with an unknown word, so it is not used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Literal

Dialect = Literal["postgres", "mysql"]
DIALECTS: tuple[Dialect, ...] = ("postgres", "mysql")
# The most SQL Runback checks at once, wherever it comes from (CI, the forms, the CLI).
MAX_SQL_CHARS = 200_000


class Verdict(StrEnum):
    ADDITIVE = "additive"
    DESTRUCTIVE = "destructive"
    UNKNOWN = "unknown"


class _Severity(IntEnum):
    additive = 0
    destructive = 1
    unknown = 2


@dataclass(frozen=True)
class Action:
    """What one part of a statement does to old code."""

    verdict: Verdict
    rule: str
    data: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    line: int  # 1-based line of the statement's first token
    statement: str
    verdict: Verdict
    rule: str
    data: Mapping[str, str]
    warnings: tuple[str, ...]


def additive(rule: str, warnings: Iterable[str] = (), **data: str) -> Action:
    return Action(Verdict.ADDITIVE, rule, data, tuple(warnings))


def destructive(rule: str, warnings: Iterable[str] = (), **data: str) -> Action:
    return Action(Verdict.DESTRUCTIVE, rule, data, tuple(warnings))


def unknown(rule: str, **data: str) -> Action:
    return Action(Verdict.UNKNOWN, rule, data)


def check_migration(sql: str, dialect: Dialect = "postgres") -> list[Finding]:
    """One finding per statement, in order. Tables created earlier in the same text have no
    data and no old code using them, so changing them is additive."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")
    classify = _postgres_statement if dialect == "postgres" else _mysql_statement
    splitter = _postgres_chunks if dialect == "postgres" else _mysql_chunks
    created: set[str] = set()
    findings = []
    try:
        chunks = list(splitter(sql))
    except _Untokenizable as error:
        line = sql.count("\n", 0, error.offset) + 1
        return [Finding(line, sql.strip(), Verdict.UNKNOWN, "unparsable", {}, ())]
    line, counted = 1, 0
    for start, text in chunks:
        try:
            action = classify(text, created)
        except RecursionError:  # sqlglot recurses ~25 frames a level of MySQL's parentheses
            action = unknown("too_nested")
        line, counted = line + sql.count("\n", counted, start), start
        findings.append(
            Finding(line, text, action.verdict, action.rule, action.data, action.warnings)
        )
    return findings


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The verdict that decides: unknown over destructive over additive."""
    return max(verdicts, key=lambda v: _Severity[v.value], default=Verdict.ADDITIVE)


def exit_code(findings: Iterable[Finding]) -> int:
    """0 all additive, 1 any destructive, 2 any unknown."""
    return _Severity[worst(f.verdict for f in findings).value].value


def _combine(actions: list[Action]) -> Action:
    """A statement with several actions (``ALTER TABLE t ADD a, DROP b``) is judged by its
    worst; the warnings of all of them are kept."""
    if not actions:
        return unknown("unrecognised")
    decisive = max(actions, key=lambda a: _Severity[a.verdict.value])
    warnings = tuple(dict.fromkeys(w for a in actions for w in a.warnings))
    return Action(decisive.verdict, decisive.rule, decisive.data, warnings)


class _Untokenizable(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


def _chunks(sql: str, tokens: Iterable[tuple[int, int, bool]]) -> Iterator[tuple[int, str]]:
    """(start offset, text) of each statement from (start, inclusive end, is ';') tokens."""
    first = last = None
    for start, end, is_semicolon in tokens:
        if is_semicolon:
            if first is not None and last is not None:
                yield first, sql[first : last + 1]
            first = last = None
            continue
        first = start if first is None else first
        last = end
    if first is not None and last is not None:
        yield first, sql[first : last + 1]


# -- PostgreSQL (pglast) -----------------------------------------------------------------------


def _postgres_chunks(sql: str) -> Iterator[tuple[int, str]]:
    from pglast import parser

    try:
        tokens = parser.scan(sql)
    except parser.ParseError as error:
        location = error.args[1] if len(error.args) > 1 else 0
        raise _Untokenizable(max(int(location or 0), 0)) from None
    return _chunks(
        sql,
        (
            (t.start, t.end, t.name == "ASCII_59")
            for t in tokens
            if t.name not in ("SQL_COMMENT", "C_COMMENT")
        ),
    )


def _postgres_statement(text: str, created: set[str]) -> Action:
    import pglast

    try:
        parsed = pglast.parse_sql(text)
    except pglast.parser.ParseError:
        return unknown("unparsable")
    if len(parsed) != 1:
        return unknown("unparsable")
    node = parsed[0].stmt
    handler = _PG_HANDLERS.get(type(node).__name__)
    if handler is None:
        return unknown("unrecognised", kind=_pg_kind(node))
    return handler(node, created)


def _pg_kind(node: Any) -> str:
    return type(node).__name__.removesuffix("Stmt")


def _relname(relation: Any) -> str:
    return str(relation.relname) if relation is not None else ""


def _pg_create_table(node: Any, created: set[str]) -> Action:
    table = _relname(node.relation if hasattr(node, "relation") else node.into.rel)
    created.add(table)
    return additive("create_table", table=table)


def _pg_alter_table(node: Any, created: set[str]) -> Action:
    from pglast.enums import ObjectType

    table = _relname(node.relation)
    if node.objtype not in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_FOREIGN_TABLE):
        return unknown("unrecognised", kind=f"ALTER {node.objtype.name.removeprefix('OBJECT_')}")
    if table in created:
        return additive("new_table_change", table=table)
    return _combine([_pg_alter_table_cmd(cmd, table) for cmd in node.cmds or ()])


def _pg_alter_table_cmd(cmd: Any, table: str) -> Action:
    from pglast.enums import AlterTableType as At

    column = str(cmd.name or "")
    match cmd.subtype:
        case At.AT_AddColumn:
            return _pg_add_column(cmd.def_, table)
        case At.AT_DropColumn:
            return destructive("drop_column", table=table, column=column)
        case At.AT_AlterColumnType:
            return destructive("change_column_type", ["table_rewrite"], table=table, column=column)
        case At.AT_SetNotNull:
            return destructive("set_not_null", ["full_scan_under_lock"], table=table, column=column)
        case At.AT_DropNotNull:
            return destructive("drop_not_null", table=table, column=column)
        case At.AT_ColumnDefault if cmd.def_ is None:
            return destructive("drop_default", table=table, column=column)
        case At.AT_ColumnDefault:
            return additive("set_default", table=table, column=column)
        case At.AT_AddConstraint:
            return _pg_add_constraint(cmd.def_, table)
        case At.AT_DropConstraint:
            return destructive("drop_constraint", table=table, constraint=column)
        case At.AT_ValidateConstraint:
            return additive("validate_constraint", table=table, constraint=column)
    return unknown("unrecognised", kind=f"ALTER TABLE {cmd.subtype.name.removeprefix('AT_')}")


_SERIALS = {"smallserial", "serial", "bigserial", "serial2", "serial4", "serial8"}
# Defaults Postgres evaluates once for the whole table (no rewrite), besides constants.
_STABLE_DEFAULT_FUNCTIONS = {"now", "current_timestamp", "statement_timestamp", "current_date"}


def _pg_add_column(column: Any, table: str) -> Action:
    from pglast.enums import ConstrType as C

    name = str(column.colname)
    kinds = {c.contype: c for c in column.constraints or ()}
    type_name = str(column.typeName.names[-1].sval) if column.typeName else ""
    generated = C.CONSTR_IDENTITY in kinds or C.CONSTR_GENERATED in kinds
    warnings = ["table_rewrite"] if C.CONSTR_GENERATED in kinds else []
    default = kinds.get(C.CONSTR_DEFAULT)
    if default is not None and not _pg_constant_default(default.raw_expr):
        warnings.append("table_rewrite")
    if C.CONSTR_PRIMARY in kinds and not (generated or type_name in _SERIALS):
        return destructive("add_column_not_null", table=table, column=name)
    if C.CONSTR_CHECK in kinds:
        return destructive("add_check_constraint", warnings, table=table, column=name)
    if generated or type_name in _SERIALS:
        return additive("add_column_generated", warnings, table=table, column=name)
    if default is not None:
        return additive("add_column_default", warnings, table=table, column=name)
    if C.CONSTR_NOTNULL in kinds:
        return destructive("add_column_not_null", table=table, column=name)
    return additive("add_column_nullable", warnings, table=table, column=name)


def _pg_constant_default(expr: Any) -> bool:
    kind = type(expr).__name__
    if kind in ("A_Const", "SQLValueFunction"):
        return True
    if kind == "TypeCast":
        return _pg_constant_default(expr.arg)
    if kind == "FuncCall":
        name = str(expr.funcname[-1].sval).lower()
        return name in _STABLE_DEFAULT_FUNCTIONS and not expr.args
    return False


def _pg_add_constraint(constraint: Any, table: str) -> Action:
    from pglast.enums import ConstrType as C

    name = str(constraint.conname or "")
    not_valid = bool(constraint.skip_validation)
    if constraint.indexname:  # ... UNIQUE/PRIMARY KEY USING INDEX: enforced since the index
        return additive("constraint_using_index", table=table, constraint=name)
    match constraint.contype:
        case C.CONSTR_FOREIGN:
            warnings = [] if not_valid else ["fk_without_not_valid"]
            return destructive("add_foreign_key", warnings, table=table, constraint=name)
        case C.CONSTR_CHECK:
            warnings = [] if not_valid else ["check_without_not_valid"]
            return destructive("add_check_constraint", warnings, table=table, constraint=name)
        case C.CONSTR_UNIQUE:
            warnings = ["index_under_lock"]
            return destructive("add_unique_constraint", warnings, table=table, constraint=name)
        case C.CONSTR_PRIMARY:
            warnings = ["index_under_lock"]
            return destructive("add_primary_key", warnings, table=table, constraint=name)
        case C.CONSTR_EXCLUSION:
            warnings = ["index_under_lock"]
            return destructive("add_exclusion_constraint", warnings, table=table, constraint=name)
        case C.CONSTR_NOTNULL:
            warnings = ["full_scan_under_lock"]
            return destructive("set_not_null", warnings, table=table, column=name)
    return unknown("unrecognised", kind=f"ADD {constraint.contype.name.removeprefix('CONSTR_')}")


def _pg_index(node: Any, created: set[str]) -> Action:
    table = _relname(node.relation)
    index = str(node.idxname or "")
    if table in created:
        return additive("create_index", table=table, index=index)
    warnings = [] if node.concurrent else ["index_not_concurrent"]
    if node.unique or node.primary:
        return destructive("unique_index", warnings, table=table, index=index)
    return additive("create_index", warnings, table=table, index=index)


_PG_DROP_RULES = {
    "OBJECT_TABLE": "drop_table",
    "OBJECT_FOREIGN_TABLE": "drop_table",
    "OBJECT_VIEW": "drop_view",
    "OBJECT_MATVIEW": "drop_view",
    "OBJECT_INDEX": "drop_index",
    "OBJECT_FUNCTION": "drop_function",
    "OBJECT_PROCEDURE": "drop_function",
    "OBJECT_ROUTINE": "drop_function",
    "OBJECT_SCHEMA": "drop_schema",
}


def _pg_drop(node: Any, created: set[str]) -> Action:
    kind = node.removeType.name
    names = [_pg_object_name(obj) for obj in node.objects or ()]
    name = ", ".join(names)
    if kind in ("OBJECT_TABLE", "OBJECT_INDEX") and names and set(names) <= created:
        return additive("new_table_change", table=name)
    rule = _PG_DROP_RULES.get(kind, "drop_object")
    warnings = ["index_not_concurrent"] if kind == "OBJECT_INDEX" and not node.concurrent else []
    return destructive(rule, warnings, name=name, kind=kind.removeprefix("OBJECT_").lower())


def _pg_object_name(obj: Any) -> str:
    """``schema.table`` of a DROP's object (a list of names, or a function's signature)."""
    kind = type(obj).__name__
    if kind in ("List", "tuple", "list"):
        items = obj.items if kind == "List" else obj
        return ".".join(str(getattr(item, "sval", item)) for item in items)
    if kind == "ObjectWithArgs":
        return ".".join(str(n.sval) for n in obj.objname)
    if kind == "TypeName":
        return ".".join(str(n.sval) for n in obj.names)
    return str(getattr(obj, "sval", obj))


_PG_RENAME_RULES = {"OBJECT_COLUMN": "rename_column", "OBJECT_TABLE": "rename_table"}


def _pg_rename(node: Any, created: set[str]) -> Action:
    kind = node.renameType.name
    table = _relname(node.relation)
    if table and table in created:
        return additive("new_table_change", table=table)
    rule = _PG_RENAME_RULES.get(kind, "rename_object")
    old = str(node.subname or table or _pg_object_name(node.object))
    return destructive(
        rule,
        table=table,
        old=old,
        new=str(node.newname),
        kind=kind.removeprefix("OBJECT_").lower(),
    )


def _pg_enum(node: Any, created: set[str]) -> Action:
    type_name = ".".join(str(n.sval) for n in node.typeName)
    if node.oldVal:
        return destructive("rename_enum_value", type=type_name, old=str(node.oldVal))
    return additive("add_enum_value", type=type_name, value=str(node.newVal))


def _pg_function(node: Any, created: set[str]) -> Action:
    name = ".".join(str(n.sval) for n in node.funcname)
    if node.replace:  # the old code calls it: a new body may change what it gets back
        return unknown("replace_function", name=name)
    return additive("create_function", name=name)


def _pg_truncate(node: Any, created: set[str]) -> Action:
    tables = ", ".join(_relname(r) for r in node.relations)
    return destructive("truncate", table=tables)


def _pg_delete(node: Any, created: set[str]) -> Action:
    table = _relname(node.relation)
    if node.whereClause is None:
        return destructive("delete_without_where", table=table)
    return additive("data_change", table=table)


def _pg_update(node: Any, created: set[str]) -> Action:
    table = _relname(node.relation)
    if node.whereClause is None:
        return destructive("update_without_where", table=table)
    return additive("data_change", table=table)


def _pg_insert(node: Any, created: set[str]) -> Action:
    return additive("insert", table=_relname(node.relation))


def _pg_set_schema(node: Any, created: set[str]) -> Action:
    table = _relname(node.relation) or _pg_object_name(node.object)
    return destructive(
        "rename_object",
        table=table,
        old=table,
        new=f"{node.newschema}.{table}",
        kind=node.objectType.name.removeprefix("OBJECT_").lower(),
    )


def _const(rule: str, verdict: Verdict = Verdict.ADDITIVE) -> Any:
    return lambda node, created: Action(verdict, rule, {"kind": _pg_kind(node)})


_PG_HANDLERS = {
    "CreateStmt": _pg_create_table,
    "CreateTableAsStmt": _pg_create_table,
    "AlterTableStmt": _pg_alter_table,
    "IndexStmt": _pg_index,
    "DropStmt": _pg_drop,
    "RenameStmt": _pg_rename,
    "AlterEnumStmt": _pg_enum,
    "CreateFunctionStmt": _pg_function,
    "TruncateStmt": _pg_truncate,
    "DeleteStmt": _pg_delete,
    "UpdateStmt": _pg_update,
    "AlterObjectSchemaStmt": _pg_set_schema,
    "ViewStmt": _const("create_view"),
    "CreateSeqStmt": _const("create_sequence"),
    "CommentStmt": _const("comment"),
    "CreateEnumStmt": _const("create_type"),
    "CompositeTypeStmt": _const("create_type"),
    "CreateDomainStmt": _const("create_type"),
    "CreateSchemaStmt": _const("create_schema"),
    "CreateExtensionStmt": _const("create_extension"),
    "InsertStmt": _pg_insert,
    "TransactionStmt": _const("no_schema_change"),
    "VariableSetStmt": _const("no_schema_change"),
    "VacuumStmt": _const("no_schema_change"),
}


# -- MySQL (sqlglot) ---------------------------------------------------------------------------


def _mysql_chunks(sql: str) -> Iterator[tuple[int, str]]:
    from sqlglot.dialects.mysql import MySQL
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType

    try:
        tokens = MySQL().tokenize(sql)
    except TokenError:
        raise _Untokenizable(0) from None
    return _chunks(sql, ((t.start, t.end, t.token_type == TokenType.SEMICOLON) for t in tokens))


def _mysql_statement(text: str, created: set[str]) -> Action:
    import sqlglot
    from sqlglot import exp

    # sqlglot logs each fallback to Command; here that fallback is an ``unknown`` verdict.
    logging.getLogger("sqlglot").setLevel(logging.ERROR)

    try:
        node = sqlglot.parse_one(text, read="mysql")
    except sqlglot.errors.SqlglotError:
        return unknown("unparsable")
    if isinstance(node, exp.Command):
        return _my_command(text, node)
    for kind, handler in _mysql_handlers():
        if isinstance(node, kind):
            return handler(node, created)
    return unknown("unrecognised", kind=node.key.upper())


def _my_command(text: str, node: Any) -> Action:
    """What sqlglot leaves as an opaque Command, read from MySQL's own tokens where the shape
    is certain: ``RENAME TABLE old TO new[, ...]``. Anything else stays unknown."""
    from sqlglot.dialects.mysql import MySQL

    dialect = MySQL()
    head = dialect.tokenize(text)
    if len(head) != 2 or head[0].text.upper() != "RENAME":
        return unknown("unrecognised", kind=str(node.this).upper())
    # The tokenizer keeps a command's arguments as one string: tokenize them in turn.
    tokens = dialect.tokenize(head[1].text)
    words = [t.text.upper() for t in tokens]
    if words[:1] == ["TABLE"] and len(tokens) >= 4 and words[2] == "TO":
        old, new = tokens[1].text, tokens[3].text
        return destructive("rename_table", table=old, old=old, new=new)
    return unknown("unrecognised", kind=str(node.this).upper())


def _mysql_handlers() -> list[tuple[type, Any]]:
    from sqlglot import exp

    return [
        (exp.Create, _my_create),
        (exp.Alter, _my_alter),
        (exp.Drop, _my_drop),
        (exp.TruncateTable, _my_truncate),
        (exp.Delete, _my_delete),
        (exp.Update, _my_update),
        (exp.Insert, lambda node, created: additive("insert", table=_my_table(node))),
        (exp.Set, lambda node, created: additive("no_schema_change", kind="SET")),
        (exp.Transaction, lambda node, created: additive("no_schema_change", kind="BEGIN")),
        (exp.Commit, lambda node, created: additive("no_schema_change", kind="COMMIT")),
        (exp.Rollback, lambda node, created: additive("no_schema_change", kind="ROLLBACK")),
    ]


def _my_table(node: Any) -> str:
    from sqlglot import exp

    table = node.this if isinstance(node.this, exp.Table) else node.find(exp.Table)
    return table.name if table is not None else ""


def _my_create(node: Any, created: set[str]) -> Action:
    kind = str(node.args.get("kind") or "").upper()
    target = node.this.this if kind == "INDEX" else node.this
    name = target.name if target is not None else ""
    if kind == "TABLE":
        table = _my_table(node)
        created.add(table)
        return additive("create_table", table=table)
    if kind == "INDEX":
        table = _my_table(node.this)
        index = node.this.name
        if node.args.get("unique") and table not in created:
            return destructive("unique_index", table=table, index=index)
        return additive("create_index", table=table, index=index)
    if kind == "VIEW":
        return additive("create_view", kind=kind)
    if kind in ("SCHEMA", "DATABASE"):
        return additive("create_schema", kind=kind)
    if kind in ("FUNCTION", "PROCEDURE"):
        return additive("create_function", name=name)
    return unknown("unrecognised", kind=f"CREATE {kind}")


def _my_alter(node: Any, created: set[str]) -> Action:
    if str(node.args.get("kind") or "").upper() != "TABLE":
        return unknown("unrecognised", kind=f"ALTER {node.args.get('kind')}")
    table = node.this.name
    if table in created:
        return additive("new_table_change", table=table)
    return _combine([_my_alter_action(a, table) for a in node.args.get("actions") or ()])


def _my_alter_action(action: Any, table: str) -> Action:
    from sqlglot import exp

    match action:
        case exp.ColumnDef():
            return _my_add_column(action, table)
        case exp.Drop():
            return _my_drop_part(action, table)
        case exp.RenameColumn():
            old, new = action.this.name, action.args["to"].name
            return destructive("rename_column", table=table, column=old, old=old, new=new)
        case exp.AlterRename():
            return destructive("rename_table", table=table, old=table, new=action.this.name)
        case exp.ModifyColumn():
            # MODIFY/CHANGE restates the whole column: type, nullability, default, name.
            column = action.this.name
            renamed = action.args.get("rename_from")
            if renamed is not None and renamed.name != column:
                old = renamed.name
                return destructive("rename_column", table=table, column=old, old=old, new=column)
            return destructive("change_column_type", ["table_copy"], table=table, column=column)
        case exp.AlterColumn():
            return _my_alter_column(action, table)
        case exp.AddConstraint():
            return _combine([_my_constraint(c, table) for c in action.expressions])
    return unknown("unrecognised", kind=f"ALTER TABLE {action.key.upper()}")


def _my_add_column(column: Any, table: str) -> Action:
    from sqlglot import exp

    name = column.name
    kinds = [c.args.get("kind") for c in column.args.get("constraints") or ()]
    not_null = any(
        isinstance(k, exp.NotNullColumnConstraint) and not k.args.get("allow_null") for k in kinds
    )
    has_default = any(isinstance(k, exp.DefaultColumnConstraint) for k in kinds)
    auto = any(isinstance(k, exp.AutoIncrementColumnConstraint) for k in kinds)
    primary = any(isinstance(k, exp.PrimaryKeyColumnConstraint) for k in kinds)
    if any(isinstance(k, exp.CheckColumnConstraint) for k in kinds):
        return destructive("add_check_constraint", table=table, column=name)
    if auto:
        return additive("add_column_generated", table=table, column=name)
    if primary or (not_null and not has_default):
        return destructive("add_column_not_null", table=table, column=name)
    if has_default:
        return additive("add_column_default", table=table, column=name)
    return additive("add_column_nullable", table=table, column=name)


def _my_drop_part(action: Any, table: str) -> Action:
    kind = str(action.args.get("kind") or "").upper()
    name = ", ".join(t.name for t in action.args.get("tables") or ())
    if kind == "COLUMN":
        return destructive("drop_column", table=table, column=name)
    if kind == "INDEX":
        return destructive("drop_index", name=name, kind="index")
    return destructive("drop_constraint", table=table, constraint=name)


def _my_alter_column(action: Any, table: str) -> Action:
    column = action.name
    args = action.args
    if args.get("dtype") is not None:
        return destructive("change_column_type", ["table_copy"], table=table, column=column)
    if args.get("allow_null") is False:
        return destructive("set_not_null", table=table, column=column)
    if args.get("allow_null") is True:
        return destructive("drop_not_null", table=table, column=column)
    if args.get("drop"):
        return destructive("drop_default", table=table, column=column)
    if args.get("default") is not None:
        return additive("set_default", table=table, column=column)
    return unknown("unrecognised", kind="ALTER COLUMN")


def _my_constraint(constraint: Any, table: str) -> Action:
    from sqlglot import exp

    parts = [constraint, *constraint.expressions] if isinstance(constraint, exp.Constraint) else []
    name = constraint.name if isinstance(constraint, exp.Constraint) else ""
    for part in parts or [constraint]:
        name = name or (part.this.name if isinstance(part.this, exp.Expression) else "")
        match part:
            # InnoDB adds a foreign key with ALGORITHM=COPY unless foreign_key_checks=0, and
            # changes a column's type only by COPY: MySQL 8.0 manual, "Online DDL Operations".
            case exp.ForeignKey():
                return destructive("add_foreign_key", ["table_copy"], table=table, constraint=name)
            case exp.CheckColumnConstraint():
                return destructive("add_check_constraint", table=table, constraint=name)
            case exp.UniqueColumnConstraint():
                return destructive("add_unique_constraint", table=table, constraint=name)
            case exp.PrimaryKey() | exp.PrimaryKeyColumnConstraint():
                return destructive("add_primary_key", table=table, constraint=name)
            case exp.IndexColumnConstraint():  # InnoDB builds secondary indexes online
                return additive("create_index", table=table, index=part.name)
    return unknown("unrecognised", kind=f"ADD {constraint.key.upper()}")


_MY_DROP_RULES = {
    "TABLE": "drop_table",
    "VIEW": "drop_view",
    "INDEX": "drop_index",
    "FUNCTION": "drop_function",
    "PROCEDURE": "drop_function",
    "SCHEMA": "drop_schema",
    "DATABASE": "drop_schema",
}


def _my_drop(node: Any, created: set[str]) -> Action:
    kind = str(node.args.get("kind") or "").upper()
    names = [t.name for t in node.args.get("tables") or ()]
    name = ", ".join(names)
    if kind == "TABLE" and names and set(names) <= created:
        return additive("new_table_change", table=name)
    return destructive(_MY_DROP_RULES.get(kind, "drop_object"), name=name, kind=kind.lower())


def _my_truncate(node: Any, created: set[str]) -> Action:
    return destructive("truncate", table=", ".join(t.name for t in node.expressions))


def _my_delete(node: Any, created: set[str]) -> Action:
    if node.args.get("where") is None:
        return destructive("delete_without_where", table=_my_table(node))
    return additive("data_change", table=_my_table(node))


def _my_update(node: Any, created: set[str]) -> Action:
    if node.args.get("where") is None:
        return destructive("update_without_where", table=_my_table(node))
    return additive("data_change", table=_my_table(node))
