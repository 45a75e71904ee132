"""Which database the service's secret names now, and whether a restore can point it at a clone.

Restores chain: after one, the secret's URL names that restore's clone, not the instance of
app.yaml. The instances a URL may name are the configured one and its clones (names
``clone_name`` made), and the one it names is what the next restore replaces.
"""

from __future__ import annotations

from bot.ops.backups.target import Database, cloudsql, secrets
from bot.ops.context import Deps
from bot.policy.databases import Endpoint, UrlError, is_clone_name, point_at_clone_from
from bot.ports import CloudSqlError, SecretsError, SqlInstance

PLACEHOLDER = Endpoint("project:region:the-clone", ("192.0.2.1",))  # TEST-NET-1, never reached


def old_endpoints(deps: Deps, database: Database) -> list[Endpoint]:
    """The configured instance first, then its clones, newest name first. Raises
    CloudSqlError when the configured instance cannot be read."""
    sql = cloudsql(deps)
    source = sql.get_instance(database.project, database.instance)
    try:
        clones = [
            found
            for found in sql.list_instances(database.project)
            if is_clone_name(found.name, database.instance)
        ]
    except CloudSqlError:  # without instances.list, only a first restore can be pointed
        clones = []
    clones.sort(key=lambda found: found.name, reverse=True)
    return [_endpoint(source)] + [_endpoint(clone) for clone in clones]


def secret_check(deps: Deps, database: Database, secret: str, version: str) -> tuple[str, str]:
    """(the instance the secret's URL names now, why the restore would stop at its secret
    step): the URL cannot be read, or names none of the instances it could replace
    (``url:...``), or the secret cannot be read (``permission_denied``...); "" for what is not
    known or not wrong. Reads the value and forgets it; never returns it."""
    project, name = secret_location(secret, database.project)
    current = ""
    try:
        current = secrets(deps).access(project, name, version)
        _, old = point_at_clone_from(current, old_endpoints(deps, database), PLACEHOLDER)
    except UrlError as error:
        return "", f"url:{error.problem}"
    except (CloudSqlError, SecretsError) as error:
        return "", error.reason
    finally:
        del current
    return old.connection_name.rsplit(":", 1)[-1], ""


def secret_location(secret: str, default_project: str) -> tuple[str, str]:
    parts = secret.split("/")
    if len(parts) == 4 and parts[0] == "projects" and parts[2] == "secrets":
        return parts[1], parts[3]
    return default_project, secret


def _endpoint(instance: SqlInstance) -> Endpoint:
    return Endpoint(instance.connection_name, instance.ip_addresses)
