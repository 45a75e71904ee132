"""doctor tests the permissions backups and restores need (issue 16, item 5): what Runback's
identity holds on each database's project (Resource Manager testIamPermissions) and secret
(Secret Manager testIamPermissions), per feature, with the exact grant that fixes it.
roles/cloudsql.editor lacks cloudsql.instances.create and cloudsql.instances.restoreBackup."""

from __future__ import annotations

from pathlib import Path

from bot.doctor_database import FEATURES
from bot.sandbox.emulator.server import Emulator
from tests.test_doctor import app_yaml, doctor, line, world  # noqa: F401 (fixture)

# What roles/cloudsql.editor grants of what Runback asks (it has no instances.create nor
# instances.restoreBackup: https://cloud.google.com/sql/docs/postgres/iam-roles).
EDITOR = {
    "cloudsql.instances.get",
    "cloudsql.instances.list",
    "cloudsql.backupRuns.list",
    "cloudsql.backupRuns.get",
    "cloudsql.backupRuns.create",
}


def test_every_database_permission_held_is_green(world: tuple[Emulator, Path]) -> None:  # noqa: F811
    emulator, folder = world
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 0, "\n".join(lines)
    for feature in ("/ops backups", "/ops backup", "/ops restore"):
        line(lines, "✅ wa-backend:", f"{feature}:", "every permission it needs")


def test_cloudsql_editor_alone_is_named_as_not_enough_for_a_restore(
    world: tuple[Emulator, Path],  # noqa: F811
) -> None:
    emulator, folder = world
    emulator.resourcemanager.granted = set(EDITOR)
    emulator.secrets.caller_permissions = frozenset({"secretmanager.versions.access"})
    code, lines = doctor(emulator, folder, app_yaml(folder))
    assert code == 1
    line(lines, "✅ wa-backend:", "/ops backup:", "every permission")
    restore = line(lines, "❌ wa-backend:", "/ops restore will fail")
    assert "cloudsql.instances.create, cloudsql.instances.restoreBackup" in restore
    assert "secretmanager.versions.add" in restore
    assert "--role=roles/cloudsql.admin" in restore
    assert "roles/secretmanager.secretVersionAdder on secret wa-backend-database-url" in restore
    new_secret = line(lines, "❌ wa-backend:", "a new secret")
    assert "secretmanager.secrets.create" in new_secret
    assert "--role=roles/secretmanager.admin" in new_secret
    asked = {p for on_project, _ in FEATURES.values() for p in on_project}
    calls = emulator.router.calls.list("resourcemanager.projects.testIamPermissions")
    assert calls and set(calls[0].body["permissions"]) == asked
