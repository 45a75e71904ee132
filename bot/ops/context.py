"""What every workflow is handed: configuration, the store and the ports. No globals."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from bot.config import Config, Role, ServiceConfig
from bot.policy.approvals import roles_of
from bot.ports import (
    AuditEvent,
    AuditSink,
    Chat,
    Clock,
    CloudRun,
    CloudSql,
    Directory,
    LogReader,
    Metrics,
    Probe,
    Secrets,
    ServiceConfigReader,
    ServiceRef,
)
from bot.render import Renderer
from bot.store import AuditRecord, Store

log = logging.getLogger("runback.ops")

BOT_ACTOR = "runback"


class Courier(Protocol):
    """Delivers the Slack outbox off the caller's thread (bot.ops.cards.Courier)."""

    @property
    def running(self) -> bool: ...

    def kick(self) -> None: ...


@dataclass
class Deps:
    config: Config
    store: Store
    cloudrun: CloudRun
    probe: Probe
    chat: Chat
    directory: Directory
    audit_sink: AuditSink
    renderer: Renderer
    clock: Clock
    metrics: Metrics
    logs: LogReader
    service_config: ServiceConfigReader  # the services' own GET /config/flags
    cloudsql: CloudSql | None = None  # None: no service names a database (or a test without)
    secrets: Secrets | None = None
    # Set by the engine (bot/ops/engine.py) when it starts; None in a script or a test of one
    # workflow without an engine: then cards are delivered at once, and nothing is submitted.
    courier: Courier | None = None  # delivers what cards stage (cards.show, cards.announce)
    submit: Callable[[str], None] | None = None  # runs an operation a workflow started

    def roles(self, user_id: str) -> frozenset[Role]:
        """The user's roles, from their Slack id and the user groups that contain it."""
        handles = tuple(
            {handle for role in Role for handle in self.config.roles.members(role).groups}
        )
        groups = self.directory.group_members(handles) if handles else {}
        return roles_of(user_id, self.config.roles, groups)

    def group_handles(self) -> tuple[str, ...]:
        return tuple(
            sorted({handle for role in Role for handle in self.config.roles.members(role).groups})
        )

    def groups_problem(self) -> str:
        """Why roles held through user groups are not counted now ("" when they are): a key
        of the ``groups_problem`` texts."""
        if not self.group_handles():
            return ""
        problem = self.directory.problem()
        if not problem:
            return ""
        return problem if problem in ("paid_teams_only", "missing_scope") else "other"

    def managed_service(self, name: str) -> ServiceConfig:
        """The configuration of a service an operation is running on (it must still exist)."""
        service = self.config.service(name)
        if service is None:
            raise RuntimeError(f"service {name} is no longer in app.yaml")
        return service

    def service_ref(self, service: ServiceConfig) -> ServiceRef:
        return ServiceRef(service.project, service.region, service.name)

    def audit(
        self,
        actor: str,
        action: str,
        outcome: str,
        *,
        service: str = "",
        revision: str = "",
        operation_id: str = "",
        **detail: Any,
    ) -> int:
        """Every action and every refusal: to the database, then to Cloud Logging. Returns the
        record's id (a refusal that a later click refers to, say)."""
        event = AuditEvent(
            at=self.clock.now(),
            actor=actor,
            action=action,
            outcome=outcome,
            service=service,
            revision=revision,
            operation_id=operation_id,
            detail=detail,
        )
        record_id = self.store.journal.add_audit(AuditRecord(**asdict(event)))
        try:
            self.audit_sink.write(event)
        except Exception:  # the database copy is the record; the log copy must not break work
            log.exception("audit sink failed for %s", action)
        return record_id
