"""Database facts as pure functions: backup freshness, the clone's name, the clone's URL.

A DATABASE_URL holds a password. Nothing here puts a URL, or any part of it, into an error or
a return value meant for people: errors say only *why* a URL cannot be pointed at the clone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from bot.ports import Backup

MAX_INSTANCE_ID = 63  # Cloud SQL instance ids: at most 63 characters (with no project prefix)
CLONE_NONCE = re.compile(r"[a-z0-9]{4}")


def newest_successful(backups: Sequence[Backup]) -> Backup | None:
    done = [b for b in backups if b.successful and (b.ended or b.started or b.enqueued)]
    return max(done, key=finished_at, default=None)


def backup_age(backup: Backup, now: datetime) -> timedelta:
    return now - finished_at(backup)


def stale(backups: Sequence[Backup], now: datetime, max_age_hours: float) -> bool:
    """No successful backup, or the newest is older than ``max_age_hours``."""
    newest = newest_successful(backups)
    return newest is None or backup_age(newest, now) > timedelta(hours=max_age_hours)


def finished_at(backup: Backup) -> datetime:
    moment = backup.ended or backup.started or backup.enqueued
    assert moment is not None
    return moment


def clone_name(instance: str, now: datetime, nonce: str) -> str:
    """``{instance}-r{YYYYMMDD-HHMMSS}-{nonce}``: named after the original and the second, with
    a short random ``nonce`` (4 of [a-z0-9]) so that a restore retried at once never collides
    with the clone of the attempt before. Within 63 characters (Cloud SQL allows 98 with the
    project id; 63 keeps it a DNS label), lowercase letters, digits and hyphens, starting with
    the original's letter and ending in a letter or digit (Cloud SQL's instance id rules:
    https://cloud.google.com/sql/docs/postgres/create-instance)."""
    if not CLONE_NONCE.fullmatch(nonce):
        raise ValueError("the nonce is 4 of [a-z0-9]")
    suffix = f"-r{now:%Y%m%d-%H%M%S}-{nonce}"
    base = instance[: MAX_INSTANCE_ID - len(suffix)].rstrip("-")
    return base + suffix


def is_clone_name(name: str, instance: str) -> bool:
    """A name ``clone_name`` makes for ``instance`` (or made before it had seconds and a
    nonce: ``-rYYYYMMDD-HHMM``)."""
    if len(name) > MAX_INSTANCE_ID:
        return False
    for suffix, pattern in (
        ("-r20261130-091500-abcd", r"-r\d{8}-\d{6}-[a-z0-9]{4}"),
        ("-r20261130-0915", r"-r\d{8}-\d{4}"),
    ):
        base = instance[: MAX_INSTANCE_ID - len(suffix)].rstrip("-")
        if re.fullmatch(re.escape(base) + pattern, name):
            return True
    return False


def clone_settings_summary(settings: Mapping[str, Any]) -> dict[str, Any]:
    """What a clone copied of its original's settings (Cloud SQL REST JSON), for its card."""
    ip = settings.get("ipConfiguration") or {}
    backups = settings.get("backupConfiguration") or {}
    network = str(ip.get("privateNetwork") or "")
    return {
        "edition": str(settings.get("edition") or ""),
        "tier": str(settings.get("tier") or ""),
        "network": network.rsplit("/", 1)[-1],
        "public_ip": ip.get("ipv4Enabled", True) is not False,
        "ssl_mode": str(ip.get("sslMode") or ""),
        "flags": [str(flag.get("name", "")) for flag in settings.get("databaseFlags") or []],
        "availability": str(settings.get("availabilityType") or ""),
        "disk": " ".join(
            str(part)
            for part in (settings.get("dataDiskType"), settings.get("dataDiskSizeGb"))
            if part
        ),
        "backups": bool(backups.get("enabled")),
        "backups_at": str(backups.get("startTime") or ""),
        "deletion_protection": bool(settings.get("deletionProtectionEnabled")),
    }


class UrlProblem(StrEnum):
    NOT_A_URL = "not_a_url"  # no scheme or nothing that names a host or socket
    OLD_INSTANCE_NOT_FOUND = "old_instance_not_found"  # it names neither the connection nor IP
    NO_ADDRESS = "no_address"  # it uses an IP, and the clone has none


class UrlError(Exception):
    """The URL cannot be pointed at the clone; ``problem`` says why (never the URL)."""

    def __init__(self, problem: UrlProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


@dataclass(frozen=True)
class Endpoint:
    connection_name: str  # project:region:instance
    ip_addresses: tuple[str, ...]


def point_at_clone(url: str, old: Endpoint, new: Endpoint) -> str:
    """The same URL (user, password, database, options) pointed at the clone: a Cloud SQL
    connection name (``/cloudsql/project:region:instance`` sockets, or a connector's
    ``instance=`` option) is replaced by the clone's; else a host that is one of the old
    instance's IP addresses is replaced by the clone's first one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UrlError(UrlProblem.NOT_A_URL) from None
    if not parts.scheme or not (parts.netloc or parts.query):
        raise UrlError(UrlProblem.NOT_A_URL)
    named = re.compile(rf"(?<![\w.:-]){re.escape(old.connection_name)}(?![\w.:-])")
    if named.search(parts.query) or named.search(parts.path) or named.search(parts.netloc):
        return urlunsplit(
            SplitResult(
                parts.scheme,
                named.sub(new.connection_name, parts.netloc),
                named.sub(new.connection_name, parts.path),
                named.sub(new.connection_name, parts.query),
                parts.fragment,
            )
        )
    if parts.hostname and parts.hostname in old.ip_addresses:
        if not new.ip_addresses:
            raise UrlError(UrlProblem.NO_ADDRESS)
        return urlunsplit(parts._replace(netloc=_with_host(parts, new.ip_addresses[0])))
    raise UrlError(UrlProblem.OLD_INSTANCE_NOT_FOUND)


def point_at_clone_from(url: str, olds: Sequence[Endpoint], new: Endpoint) -> tuple[str, Endpoint]:
    """``point_at_clone`` from the first of ``olds`` the URL names (the configured instance,
    then the clones earlier restores moved the service to: restores chain), and that one."""
    for old in olds:
        try:
            return point_at_clone(url, old, new), old
        except UrlError as error:
            if error.problem is not UrlProblem.OLD_INSTANCE_NOT_FOUND:
                raise
    raise UrlError(UrlProblem.OLD_INSTANCE_NOT_FOUND)


def _with_host(parts: SplitResult, host: str) -> str:
    credentials, _, _ = parts.netloc.rpartition("@")
    port = f":{parts.port}" if parts.port else ""
    return f"{credentials}@{host}{port}" if credentials else f"{host}{port}"


def secret_target(current_version: str) -> str:
    """Where the clone's URL goes: ``new_version`` of the same secret when the serving revision
    pins a version number (the old revision keeps reading its own), else ``new_secret``: a
    revision that reads ``latest`` would read the clone's URL on its next cold start, and going
    back must give back the old database."""
    return "new_version" if current_version.isdigit() else "new_secret"
