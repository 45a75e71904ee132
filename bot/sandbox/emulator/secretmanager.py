"""Secret Manager API v1 emulator (REST), in the dialect of ``google-cloud-secret-manager``.

Payloads are built from, and parsed into, the library's own message types
(https://cloud.google.com/secret-manager/docs/reference/rest):

- ``secrets.create`` (``POST /v1/projects/P/secrets?secretId=ID``) needs ``replication``; an
  existing id is a 409 ALREADY_EXISTS.
- ``secrets.addVersion`` takes ``payload.data`` (base64) and checks ``dataCrc32c`` when given
  (a mismatch is a 400); versions are numbered 1, 2, ... per secret, ENABLED.
- ``versions.access`` answers the payload with its CRC32C; ``latest`` is the newest ENABLED
  version. ``versions.get`` and ``versions.list`` (newest first) never show a payload.

- Per-secret IAM (``:getIamPolicy``, ``:setIamPolicy``, ``:testIamPermissions``, the shapes
  of ``google.iam.v1``): a policy of role bindings with an etag (a stale etag is a 409
  ABORTED). Roles granted on the project (``grant_project``) apply to every secret. Cloud Run
  reads a revision's secrets as its service account (see run_secrets.py). The caller (Runback)
  holds ``caller_permissions`` (default: all of ``CALLER_DEFAULT``).

The values stay inside the emulator: ``value`` is for tests that check what a service would
read; the request log holds what the client sent, as Google would see it.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import google_crc32c
from google.cloud import secretmanager_v1 as sm
from google.iam.v1 import iam_policy_pb2, policy_pb2
from google.protobuf import json_format

from bot.sandbox.emulator.cloudrun_model import AlreadyExists, _message_response
from bot.sandbox.emulator.http import HttpError, Request, Response, Router

SECRET = r"/v1/(?P<secret>projects/[^/]+/secrets/[^/:]+)"
VERSION = SECRET + r"/versions/(?P<version>[^/:]+)"
SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
Enabled = sm.SecretVersion.State.ENABLED
ACCESSOR = "roles/secretmanager.secretAccessor"
# The roles that include secretmanager.versions.access (Secret Manager's predefined roles).
READING_ROLES = frozenset({ACCESSOR, "roles/secretmanager.admin", "roles/owner"})
CALLER_DEFAULT = frozenset(
    {
        "secretmanager.secrets.get",
        "secretmanager.secrets.create",
        "secretmanager.secrets.getIamPolicy",
        "secretmanager.secrets.setIamPolicy",
        "secretmanager.versions.access",
        "secretmanager.versions.add",
        "secretmanager.versions.get",
    }
)


class SecretManagerEmulator:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._secrets: dict[str, sm.Secret] = {}
            self._versions: dict[str, list[tuple[sm.SecretVersion, bytes]]] = {}
            self._policies: dict[str, policy_pb2.Policy] = {}
            self._project_roles: dict[str, dict[str, set[str]]] = {}
            self.caller_permissions: frozenset[str] = CALLER_DEFAULT

    # -- Python API ---------------------------------------------------------------------------

    def seed_secret(self, project: str, secret_id: str, *values: str) -> str:
        """A secret with one version per value (1, 2, ...); returns its name."""
        with self._lock:
            name = self._create(project, secret_id)
            for value in values:
                self._add(name, value.encode())
            return name

    def value(self, project: str, secret_id: str, version: str = "latest") -> str:
        with self._lock:
            return self._find(f"projects/{project}/secrets/{secret_id}", version)[1].decode()

    def versions(self, project: str, secret_id: str) -> list[str]:
        with self._lock:
            return [
                v.name.rsplit("/", 1)[-1]
                for v, _ in self._require(f"projects/{project}/secrets/{secret_id}")
            ]

    def grant(self, secret_name: str, role: str, member: str) -> None:
        """Add ``member`` (``serviceAccount:EMAIL``) to ``role`` on one secret."""
        with self._lock:
            self._require(secret_name)
            policy = self._policies.setdefault(secret_name, policy_pb2.Policy(version=1))
            _add_binding(policy, role, member)

    def grant_project(self, project: str, role: str, member: str) -> None:
        with self._lock:
            self._project_roles.setdefault(project, {}).setdefault(role, set()).add(member)

    def members(self, secret_name: str, role: str = ACCESSOR) -> list[str]:
        with self._lock:
            policy = self._policies.get(secret_name) or policy_pb2.Policy()
            return sorted(m for b in policy.bindings if b.role == role for m in b.members)

    def can_access(self, secret_name: str, member: str) -> bool:
        """Whether ``member`` may read versions of ``secret_name`` (the secret's policy or the
        project's roles); False for a secret that does not exist."""
        with self._lock:
            if secret_name not in self._secrets:
                return False
            project = secret_name.split("/")[1]
            roles = self._project_roles.get(project, {})
            if any(member in roles.get(role, ()) for role in READING_ROLES):
                return True
            policy = self._policies.get(secret_name) or policy_pb2.Policy()
            return any(b.role in READING_ROLES and member in b.members for b in policy.bindings)

    def knows(self, secret_name: str) -> bool:
        with self._lock:
            return secret_name in self._secrets

    def has_version(self, secret_name: str, version: str) -> bool:
        with self._lock:
            try:
                self._find(secret_name, version)
            except HttpError:
                return False
            return True

    def secrets(self) -> list[str]:
        with self._lock:
            return sorted(self._secrets)

    # -- routes -------------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        add = router.add
        add("GET", SECRET, "secretmanager.secrets.get", self._get_secret)
        add(
            "POST",
            r"/v1/projects/(?P<project>[^/]+)/secrets",
            "secretmanager.secrets.create",
            self._create_secret,
        )
        add("POST", SECRET + ":addVersion", "secretmanager.versions.add", self._add_version)
        add("GET", VERSION + ":access", "secretmanager.versions.access", self._access)
        add("GET", VERSION, "secretmanager.versions.get", self._get_version)
        add("GET", SECRET + "/versions", "secretmanager.versions.list", self._list_versions)
        add("GET", SECRET + ":getIamPolicy", "secretmanager.secrets.getIamPolicy", self._get_iam)
        add("POST", SECRET + ":setIamPolicy", "secretmanager.secrets.setIamPolicy", self._set_iam)
        test = SECRET + ":testIamPermissions"
        add("POST", test, "secretmanager.secrets.testIamPermissions", self._test_iam)

    def _get_iam(self, request: Request) -> Response:
        with self._lock:
            self._require(request.params["secret"])
            policy = self._policies.setdefault(
                request.params["secret"], policy_pb2.Policy(version=1, etag=_etag())
            )
            if not policy.etag:
                policy.etag = _etag()
            return _proto_response(policy)

    def _set_iam(self, request: Request) -> Response:
        body = _parse_proto(iam_policy_pb2.SetIamPolicyRequest(), request)
        name = request.params["secret"]
        with self._lock:
            self._require(name)
            current = self._policies.get(name)
            if body.policy.etag and current is not None and body.policy.etag != current.etag:
                raise HttpError(
                    409,
                    "There were concurrent policy changes. Please retry the "
                    "whole read-modify-write with exponential backoff.",
                )
            policy = policy_pb2.Policy()
            policy.CopyFrom(body.policy)
            policy.etag = _etag()
            self._policies[name] = policy
            return _proto_response(policy)

    def _test_iam(self, request: Request) -> Response:
        body = _parse_proto(iam_policy_pb2.TestIamPermissionsRequest(), request)
        with self._lock:
            self._require(request.params["secret"])
            granted = [p for p in body.permissions if p in self.caller_permissions]
            return _proto_response(iam_policy_pb2.TestIamPermissionsResponse(permissions=granted))

    def _get_secret(self, request: Request) -> Response:
        with self._lock:
            self._require(request.params["secret"])
            return _message_response(self._secrets[request.params["secret"]], request)

    def _create_secret(self, request: Request) -> Response:
        secret_id = request.arg("secretId")
        if not SECRET_ID.fullmatch(secret_id):
            raise HttpError(400, "secretId must match [a-zA-Z_0-9-]{1,255}.")
        body = _parse(sm.Secret, request)
        if "replication" not in body:  # automatic replication is an empty message
            raise HttpError(400, "Secret.replication is required.")
        with self._lock:
            name = f"projects/{request.params['project']}/secrets/{secret_id}"
            if name in self._secrets:
                return AlreadyExists(f"Secret [{name}] already exists.").response()
            self._create(request.params["project"], secret_id, body)
            return _message_response(self._secrets[name], request)

    def _add_version(self, request: Request) -> Response:
        body = _parse(sm.AddSecretVersionRequest, request)
        data = body.payload.data
        if "data_crc32c" in body.payload and body.payload.data_crc32c != _crc(data):
            raise HttpError(400, "Checksum mismatch: payload.dataCrc32c does not match the data.")
        with self._lock:
            self._require(request.params["secret"])
            version = self._add(request.params["secret"], data)
            return _message_response(version, request)

    def _access(self, request: Request) -> Response:
        with self._lock:
            version, data = self._find(request.params["secret"], request.params["version"])
            if version.state != Enabled:
                raise HttpError(400, f"{version.name} is in {version.state.name} state.")
            payload = sm.SecretPayload(data=data, data_crc32c=_crc(data))
            answer = sm.AccessSecretVersionResponse(name=version.name, payload=payload)
            return _message_response(answer, request)

    def _get_version(self, request: Request) -> Response:
        with self._lock:
            return _message_response(
                self._find(request.params["secret"], request.params["version"])[0], request
            )

    def _list_versions(self, request: Request) -> Response:
        with self._lock:
            versions = [v for v, _ in reversed(self._require(request.params["secret"]))]
            answer = sm.ListSecretVersionsResponse(versions=versions, total_size=len(versions))
            return _message_response(answer, request)

    # -- state --------------------------------------------------------------------------------

    def _create(self, project: str, secret_id: str, body: sm.Secret | None = None) -> str:
        name = f"projects/{project}/secrets/{secret_id}"
        secret = (
            sm.Secret(body)
            if body is not None
            else sm.Secret(replication=sm.Replication(automatic=sm.Replication.Automatic()))
        )
        secret.name = name
        secret.create_time = self._now()
        self._secrets[name] = secret
        self._versions[name] = []
        return name

    def _add(self, secret: str, data: bytes) -> sm.SecretVersion:
        versions = self._versions[secret]
        version = sm.SecretVersion(
            name=f"{secret}/versions/{len(versions) + 1}",
            create_time=self._now(),
            state=Enabled,
        )
        versions.append((version, bytes(data)))
        return version

    def _find(self, secret: str, version: str) -> tuple[sm.SecretVersion, bytes]:
        versions = self._require(secret)
        if version == "latest":
            enabled = [pair for pair in versions if pair[0].state == Enabled]
            if enabled:
                return enabled[-1]
        elif version.isdigit() and 1 <= int(version) <= len(versions):
            return versions[int(version) - 1]
        raise HttpError(404, f"Secret Version [{secret}/versions/{version}] not found.")

    def _require(self, secret: str) -> list[tuple[sm.SecretVersion, bytes]]:
        if secret not in self._secrets:
            raise HttpError(404, f"Secret [{secret}] not found or has no versions.")
        return self._versions[secret]

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


def _add_binding(policy: policy_pb2.Policy, role: str, member: str) -> None:
    for binding in policy.bindings:
        if binding.role == role:
            if member not in binding.members:
                binding.members.append(member)
            return
    policy.bindings.add(role=role, members=[member])


def _etag() -> bytes:
    return uuid.uuid4().bytes[:8]


def _proto_response(message: object) -> Response:
    return Response(200, json_format.MessageToJson(message, indent=None).encode())


def _parse_proto(message: Any, request: Request) -> Any:
    try:
        return json_format.Parse(request.body or b"{}", message)
    except json_format.ParseError as error:
        raise HttpError(400, f"Invalid JSON payload received. {error}") from error


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def _parse(kind: type, request: Request) -> Any:
    try:
        return kind.from_json(request.body or b"{}", ignore_unknown_fields=False)  # type: ignore[attr-defined]
    except Exception as error:
        raise HttpError(400, f"Invalid JSON payload received. {error}") from error
