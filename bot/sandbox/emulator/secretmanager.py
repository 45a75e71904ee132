"""Secret Manager API v1 emulator (REST), in the dialect of ``google-cloud-secret-manager``.

Payloads are built from, and parsed into, the library's own message types
(https://cloud.google.com/secret-manager/docs/reference/rest):

- ``secrets.create`` (``POST /v1/projects/P/secrets?secretId=ID``) needs ``replication``; an
  existing id is a 409 ALREADY_EXISTS.
- ``secrets.addVersion`` takes ``payload.data`` (base64) and checks ``dataCrc32c`` when given
  (a mismatch is a 400); versions are numbered 1, 2, ... per secret, ENABLED.
- ``versions.access`` answers the payload with its CRC32C; ``latest`` is the newest ENABLED
  version. ``versions.get`` and ``versions.list`` (newest first) never show a payload.

The values stay inside the emulator: ``value`` is for tests that check what a service would
read; the request log holds what the client sent, as Google would see it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import google_crc32c
from google.cloud import secretmanager_v1 as sm

from bot.sandbox.emulator.cloudrun import AlreadyExists, _message_response
from bot.sandbox.emulator.http import HttpError, Request, Response, Router

SECRET = r"/v1/(?P<secret>projects/[^/]+/secrets/[^/:]+)"
VERSION = SECRET + r"/versions/(?P<version>[^/:]+)"
SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
Enabled = sm.SecretVersion.State.ENABLED


class SecretManagerEmulator:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._secrets: dict[str, sm.Secret] = {}
            self._versions: dict[str, list[tuple[sm.SecretVersion, bytes]]] = {}

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


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def _parse(kind: type, request: Request) -> object:
    try:
        return kind.from_json(request.body or b"{}", ignore_unknown_fields=False)  # type: ignore[attr-defined]
    except Exception as error:
        raise HttpError(400, f"Invalid JSON payload received. {error}") from error
