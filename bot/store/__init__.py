"""Durable state, one repository per aggregate behind one ``Store`` (root.py): the tables
(models.py); operations with their steps, leases and service locks (operations.py); approvals;
the timeline and audit trail (journal.py); the serving history; incidents; the Slack outbox;
drills; the rollback procedure and its acknowledgements; requests already seen. The same code
runs on SQLite and PostgreSQL.

Importers take what they need from here: ``from bot.store import Store, Operation, Move``.
"""

from bot.store.approvals import Decided
from bot.store.models import (
    DATA_SEQ,
    TERMINAL_STATES,
    ApprovalRequest,
    AuditRecord,
    DrillRecord,
    IncidentRecord,
    Operation,
    OutboxMessage,
    ProcedureAck,
    ProcedurePost,
    SeenRequest,
    ServiceLock,
    ServingHistory,
    Step,
    TimelineEvent,
    data_seq,
    new_id,
)
from bot.store.operations import LockHolder, Move, NewerOperation, Newest, ServiceHeld
from bot.store.root import Store

__all__ = [
    "DATA_SEQ",
    "TERMINAL_STATES",
    "ApprovalRequest",
    "AuditRecord",
    "Decided",
    "DrillRecord",
    "IncidentRecord",
    "LockHolder",
    "Move",
    "NewerOperation",
    "Newest",
    "Operation",
    "OutboxMessage",
    "ProcedureAck",
    "ProcedurePost",
    "SeenRequest",
    "ServiceHeld",
    "ServiceLock",
    "ServingHistory",
    "Step",
    "Store",
    "TimelineEvent",
    "data_seq",
    "new_id",
]
