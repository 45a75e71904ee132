"""Which database a command means: a service of app.yaml that names one, or its instance."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import ServiceConfig
from bot.ops.context import Deps
from bot.ops.errors import UserError
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


def cloudsql(deps: Deps) -> CloudSql:
    if deps.cloudsql is None:
        raise UserError("error.db.no_adapter")
    return deps.cloudsql


def secrets(deps: Deps) -> Secrets:
    if deps.secrets is None:
        raise UserError("error.db.no_adapter")
    return deps.secrets
