"""``doctor``'s permission checks for backups and restores: what Runback's identity holds on
each database's project (Resource Manager ``testIamPermissions``: Cloud SQL's permissions are
granted on the project) and on its secret (Secret Manager ``testIamPermissions``), reported per
feature with the exact grant that fixes it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bot.config import ServiceConfig

# feature -> (permissions on the project, permissions on the secret)
FEATURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "backups": (("cloudsql.instances.get", "cloudsql.backupRuns.list"), ()),
    "backup": (("cloudsql.backupRuns.create", "cloudsql.backupRuns.get"), ()),
    "restore": (
        (
            "cloudsql.instances.create",
            "cloudsql.instances.restoreBackup",
            "cloudsql.instances.list",
            "cloudsql.instances.get",
        ),
        ("secretmanager.versions.access", "secretmanager.versions.add"),
    ),
    "restore_new_secret": (
        ("secretmanager.secrets.create", "secretmanager.secrets.setIamPolicy"),
        (),
    ),
}
FIXES = {
    "backups": "roles/cloudsql.viewer",
    "backup": "roles/cloudsql.editor",
    "restore": "roles/cloudsql.admin",
    "restore_new_secret": "roles/secretmanager.admin",
}
SECRET_FIX = "roles/secretmanager.secretAccessor and roles/secretmanager.secretVersionAdder"

Finding = Any
Make = Callable[..., Finding]


def check_database_permissions(
    service: ServiceConfig, emulator_host: str | None, ok: Make, fail: Make
) -> Iterator[Finding]:
    from bot.gcp.permissions import PermissionsError, ProjectPermissions
    from bot.gcp.secrets import SecretManager
    from bot.ports import SecretsError

    database = service.database
    if database is None:
        return
    project = service.database_project
    wanted = sorted({p for on_project, _ in FEATURES.values() for p in on_project})
    try:
        held = set(ProjectPermissions(emulator_host).held(project, wanted))
    except PermissionsError as error:
        yield fail("db_permissions_unknown", project=project, reason=error.reason)
        return
    secret_wanted = sorted({p for _, on_secret in FEATURES.values() for p in on_secret})
    secret_project, secret = _secret_location(database.secret, project)
    try:
        store = SecretManager(emulator_host, retry_deadline_s=8.0)
        held |= set(store.test_permissions(secret_project, secret, secret_wanted))
    except SecretsError as error:
        yield fail("db_secret_unknown", secret=database.secret, reason=error.reason)
        return
    facts = {"service": service.name, "project": project, "secret": database.secret}
    for feature, (on_project, on_secret) in FEATURES.items():
        missing = [p for p in (*on_project, *on_secret) if p not in held]
        if not missing:
            yield ok("db_permissions_ok", feature=feature, **facts)
            continue
        project_missing = [p for p in missing if p in on_project]
        yield fail(
            "db_permissions_missing",
            feature=feature,
            missing=", ".join(missing),
            role=FIXES[feature] if project_missing else "",
            secret_role=SECRET_FIX if len(project_missing) < len(missing) else "",
            **facts,
        )


def _secret_location(secret: str, default_project: str) -> tuple[str, str]:
    parts = secret.split("/")
    if len(parts) == 4 and parts[0] == "projects" and parts[2] == "secrets":
        return parts[1], parts[3]
    return default_project, secret
