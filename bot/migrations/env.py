"""Alembic's entry point, run by bot.schema on a connection it has already locked and opened a
transaction on (there is no alembic.ini: see bot/schema.py)."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from bot.database import Base, UTCDateTime


def _render_item(kind: str, item: Any, _context: Any) -> str | Literal[False]:
    """Autogenerate writes the store's datetime type as the migration's own TIMESTAMP."""
    if kind == "type" and isinstance(item, UTCDateTime):
        return "TIMESTAMP"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it: autogenerate writes batch operations for that.
    render_as_batch=True,
    compare_type=True,
    render_item=_render_item,
)
with context.begin_transaction():
    context.run_migrations()
