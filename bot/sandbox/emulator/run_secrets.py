"""What Cloud Run checks of a new revision's secrets, for the Cloud Run emulator.

Cloud Run refuses to make a revision Ready when its service account cannot read a secret it
references: the update's operation fails (code 13) with, per variable, "Revision 'NAME' is
not ready and cannot serve traffic. spec.template.spec.containers[i].env[j].value_from.
secret_key_ref.name: Permission denied on secret: projects/P/secrets/S/versions/V for Revision
service account SA. The service account used must be granted the 'Secret Manager Secret
Accessor' role (roles/secretmanager.secretAccessor) at the secret, project or higher level."
(https://cloud.google.com/run/docs/configuring/services/secrets#access-secret; the message as
deployments report it, e.g. terraform-google-modules/terraform-docs-samples#168). A revision
without a service account runs as the project's default compute service account. A secret the
Secret Manager emulator has never held is not checked (tests that seed Cloud Run alone, with
made-up secret names): there the emulator is kinder than Cloud Run, which would refuse it.
"""

from __future__ import annotations

from collections.abc import Callable

from google.cloud import run_v2

from bot.sandbox.emulator.secretmanager import SecretManagerEmulator

PROJECT_NUMBER = "100000000001"  # the sandbox's projects have no numbers of their own
SECRET_DENIED_CODE = 13


def default_service_account(project: str = "") -> str:
    return f"{PROJECT_NUMBER}-compute@developer.gserviceaccount.com"


def secret_access_check(
    secrets: SecretManagerEmulator,
) -> Callable[[str, run_v2.RevisionTemplate, str], str]:
    """A check for the Cloud Run emulator: why revision ``name`` of service ``service`` (full
    name) built from ``template`` cannot start, or ""."""

    def check(service: str, template: run_v2.RevisionTemplate, name: str) -> str:
        project = service.split("/")[1]
        account = template.service_account or default_service_account(project)
        problems = []
        for i, container in enumerate(template.containers):
            for j, var in enumerate(container.env):
                if "value_source" not in var or not var.value_source.secret_key_ref.secret:
                    continue
                ref = var.value_source.secret_key_ref
                secret = ref.secret
                if not secret.startswith("projects/"):
                    secret = f"projects/{project}/secrets/{secret}"
                version = f"{secret}/versions/{ref.version or 'latest'}"
                where = f"spec.template.spec.containers[{i}].env[{j}].value_from.secret_key_ref"
                if not secrets.knows(secret):  # a service seeded without Secret Manager
                    continue
                if not secrets.can_access(secret, f"serviceAccount:{account}"):
                    problems.append(
                        f"{where}.name: Permission denied on secret: {version} for Revision "
                        f"service account {account}. The service account used must be granted "
                        "the 'Secret Manager Secret Accessor' role "
                        "(roles/secretmanager.secretAccessor) at the secret, project or higher "
                        "level."
                    )
                elif not secrets.has_version(secret, ref.version or "latest"):
                    problems.append(f"{where}.name: Secret {version} was not found.")
        if not problems:
            return ""
        return f"Revision '{name}' is not ready and cannot serve traffic. " + "\n".join(problems)

    return check
