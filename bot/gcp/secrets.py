"""The Secrets port over Secret Manager v1 (``google-cloud-secret-manager``, REST transport).

A value read or written here is a credential: it is never logged, never put in an exception,
and the errors raised say which secret and why, never what it holds. Versions are added with
their CRC32C, which Secret Manager checks (https://cloud.google.com/secret-manager/docs/
reference/rest/v1/SecretPayload). Google libraries are imported on first use.
"""

from __future__ import annotations

from typing import Any

from bot.gcp.retrying import (
    RetryingAdapter,
    call_google,
    emulator_options,
    transient_retry,
)
from bot.ports import SecretsError


class SecretManager(RetryingAdapter):
    """Secrets (bot.ports) backed by secretmanager_v1.SecretManagerServiceClient."""

    def __init__(self, emulator_host: str | None, **retry_budget: float) -> None:
        super().__init__(emulator_host, **retry_budget)
        self._client: Any = None

    def access(self, project: str, secret: str, version: str) -> str:
        name = f"projects/{project}/secrets/{secret}/versions/{version}"
        answer = self._run(lambda c, o: c.access_secret_version(request={"name": name}, **o))
        try:
            return str(answer.payload.data.decode("utf-8"))
        except UnicodeDecodeError:
            raise SecretsError("bad_value", f"{name} is not UTF-8 text") from None

    def add_version(self, project: str, secret: str, value: str) -> str:
        import google_crc32c

        data = value.encode("utf-8")
        request = {
            "parent": f"projects/{project}/secrets/{secret}",
            "payload": {"data": data, "data_crc32c": int(google_crc32c.value(data))},
        }
        version = self._run(lambda c, o: c.add_secret_version(request=request, **o), creates=True)
        return str(version.name.rsplit("/", 1)[-1])

    def create_secret(self, project: str, secret: str) -> None:
        request = {
            "parent": f"projects/{project}",
            "secret_id": secret,
            "secret": {"replication": {"automatic": {}}},
        }
        self._run(lambda c, o: c.create_secret(request=request, **o), creates=True)

    def version_of(self, project: str, secret: str, version: str) -> str:
        name = f"projects/{project}/secrets/{secret}/versions/{version}"
        found = self._run(lambda c, o: c.get_secret_version(request={"name": name}, **o))
        return str(found.name.rsplit("/", 1)[-1])

    def grant_accessor(self, project: str, secret: str, member: str) -> None:
        from google.iam.v1 import policy_pb2

        resource = f"projects/{project}/secrets/{secret}"
        role = "roles/secretmanager.secretAccessor"
        for _ in range(3):  # a concurrent change makes the etag stale (409): read again
            policy = self._run(lambda c, o: c.get_iam_policy(request={"resource": resource}, **o))
            updated = policy_pb2.Policy()
            updated.CopyFrom(policy)
            binding = next((b for b in updated.bindings if b.role == role), None)
            if binding is None:
                binding = updated.bindings.add(role=role)
            if member in binding.members:
                return
            binding.members.append(member)
            request = {"resource": resource, "policy": updated}
            try:
                self._run(lambda c, o, r=request: c.set_iam_policy(request=r, **o))
                return
            except SecretsError as error:
                if error.reason not in ("aborted", "conflict"):
                    raise
        raise SecretsError("conflict", f"the IAM policy of {resource} kept changing")

    def test_permissions(self, project: str, secret: str, permissions: list[str]) -> list[str]:
        request = {"resource": f"projects/{project}/secrets/{secret}", "permissions": permissions}
        answer = self._run(lambda c, o: c.test_iam_permissions(request=request, **o))
        return list(answer.permissions)

    @property
    def ready(self) -> bool:
        return self._client is not None

    def warm_up(self) -> None:
        self._get_client()

    def _run(self, fn: Any, creates: bool = False) -> Any:
        client = self._get_client()
        options = {
            "retry": transient_retry(self._initial_s, self._deadline_s, creates=creates),
            "timeout": self._timeout_s,
        }
        return call_google(lambda: fn(client, options), SecretsError)

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                from google.cloud import secretmanager_v1

                options = emulator_options(self._emulator_host)
                self._client = secretmanager_v1.SecretManagerServiceClient(**options)
            return self._client
