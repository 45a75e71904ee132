"""Which database a command means: a service of app.yaml that names one, or its instance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.config import Action, ServiceConfig
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.policy.approvals import Decision, decide_request
from bot.ports import CloudSql, Secrets


@dataclass(frozen=True)
class Database:
    service: ServiceConfig
    project: str
    instance: str
    secret: str
    env: str


def resolve_database(deps: Deps, word: str) -> Database:
    """``SERVICE`` (with a ``database:`` in app.yaml) or the Cloud SQL instance it names.
    Raises UserError (nothing changed) for anything else."""
    service = deps.config.service(word) or deps.config.service_of_instance(word)
    if service is None:
        known = [s.name for s in deps.config.services if s.database] + [
            s.database.instance for s in deps.config.services if s.database
        ]
        raise UserError("error.db.unknown", target=word, known=known)
    if service.database is None:
        raise UserError("error.db.none", service=service.name)
    return Database(
        service=service,
        project=service.database_project,
        instance=service.database.instance,
        secret=service.database.secret,
        env=service.database.env,
    )


def authorize_database(
    deps: Deps,
    action: Action,
    target: str,
    user: str,
    channel: str,
    refuse: Callable[[str, str], None],
) -> tuple[Database, Decision]:
    """The database ``target`` names, and the approval matrix's decision for ``user`` asking
    ``action`` of it; ``refuse(service, why)`` audits a refusal before its UserError is raised
    (an unknown database or a role the matrix does not allow)."""
    try:
        database = resolve_database(deps, target)
    except UserError:
        refuse(target, "unknown_database")
        raise
    in_incidents = channel == deps.config.channels.incidents.id
    decision = decide_request(deps.config.approvals, action, deps.roles(user), in_incidents)
    if not decision.allowed:
        refuse(database.service.name, str(decision.refusal))
        raise UserError(
            f"error.refused.{decision.refusal}",
            action=str(action),
            role=str(decision.required_role),
            channel=deps.config.channels.incidents.name,
        )
    return database, decision


def cloudsql(deps: Deps) -> CloudSql:
    if deps.cloudsql is None:
        raise UserError("error.db.no_adapter")
    return deps.cloudsql


def secrets(deps: Deps) -> Secrets:
    if deps.secrets is None:
        raise UserError("error.db.no_adapter")
    return deps.secrets
