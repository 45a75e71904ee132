"""One operation per service: an operation is recorded already holding its service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.store import Operation, ServiceHeld


def open_holding(deps: Deps, now: datetime, **fields: Any) -> Operation:
    """Record an operation that holds its service from its first moment (Operations.open_operation).
    When another operation holds it, nothing is written and UserError says who (busy)."""
    try:
        return deps.store.operations.open_operation(now, **fields)
    except ServiceHeld:
        holder = deps.store.operations.lock_holder(fields["service"])
        raise UserError("error.busy", service=fields["service"], holder=holder) from None
