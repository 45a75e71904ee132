"""Pure database facts: the clone's URL (never leaking it), its name, backup freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.policy.databases import (
    Endpoint,
    UrlError,
    UrlProblem,
    clone_name,
    is_clone_name,
    newest_successful,
    point_at_clone,
    point_at_clone_from,
    secret_target,
    stale,
)
from bot.ports import Backup

OLD = Endpoint("proj:us-central1:orders-db", ("10.20.0.3", "34.1.2.3"))
NEW = Endpoint("proj:us-central1:orders-db-r20261130-0915", ("10.20.0.9",))
NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://app:s3cr%40t@/orders?host=/cloudsql/proj:us-central1:orders-db",
            "postgresql://app:s3cr%40t@/orders?host=/cloudsql/proj:us-central1:orders-db-r20261130-0915",
        ),
        (
            "mysql+pymysql://app:pw@/orders?unix_socket=/cloudsql/proj:us-central1:orders-db&x=1",
            "mysql+pymysql://app:pw@/orders?unix_socket=/cloudsql/proj:us-central1:orders-db-r20261130-0915&x=1",
        ),
        (
            "postgresql://app:pw@10.20.0.3:5432/orders?sslmode=require",
            "postgresql://app:pw@10.20.0.9:5432/orders?sslmode=require",
        ),
        ("postgresql://app:pw@34.1.2.3/orders", "postgresql://app:pw@10.20.0.9/orders"),
    ],
)
def test_the_url_points_at_the_clone_and_keeps_everything_else(url: str, expected: str) -> None:
    assert point_at_clone(url, OLD, NEW) == expected


def test_a_longer_instance_name_that_starts_like_the_old_one_is_not_replaced() -> None:
    url = "postgresql://app:pw@/o?host=/cloudsql/proj:us-central1:orders-db-old"
    with pytest.raises(UrlError) as raised:
        point_at_clone(url, OLD, NEW)
    assert raised.value.problem is UrlProblem.OLD_INSTANCE_NOT_FOUND


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url with password hunter2", UrlProblem.NOT_A_URL),
        ("postgresql://app:hunter2@db.example.com/orders", UrlProblem.OLD_INSTANCE_NOT_FOUND),
    ],
)
def test_a_url_that_cannot_be_pointed_says_why_and_never_what(url: str, problem: str) -> None:
    with pytest.raises(UrlError) as raised:
        point_at_clone(url, OLD, NEW)
    assert raised.value.problem == problem
    assert "hunter2" not in str(raised.value) and "hunter2" not in repr(raised.value)


def test_an_ip_url_needs_an_address_on_the_clone() -> None:
    with pytest.raises(UrlError) as raised:
        point_at_clone("postgresql://a:b@10.20.0.3/o", OLD, Endpoint(NEW.connection_name, ()))
    assert raised.value.problem is UrlProblem.NO_ADDRESS


def test_the_clone_is_named_after_the_original_the_second_and_a_nonce_within_63() -> None:
    assert clone_name("orders-db", NOW, "k3x9") == "orders-db-r20261130-091500-k3x9"
    long = clone_name("a" * 63, NOW, "0000")
    assert len(long) == 63 and long.endswith("-r20261130-091500-0000")
    assert clone_name("orders-db", NOW, "aaaa") != clone_name("orders-db", NOW, "aaab")
    assert is_clone_name(long, "a" * 63) and is_clone_name("orders-db-r20261130-0915", "orders-db")
    assert not is_clone_name("orders-db-r20261130-091500-K3X9", "orders-db")
    assert not is_clone_name("other-db-r20261130-091500-k3x9", "orders-db")
    with pytest.raises(ValueError):
        clone_name("orders-db", NOW, "-x")


def test_a_url_on_an_earlier_clone_is_pointed_at_the_new_one() -> None:
    earlier = Endpoint("proj:us-central1:orders-db-r20261129-101010-aaaa", ("10.20.0.7",))
    url = f"postgresql://app:pw@/o?host=/cloudsql/{earlier.connection_name}"
    pointed, found = point_at_clone_from(url, [OLD, earlier], NEW)
    assert found == earlier and pointed.endswith(f"/cloudsql/{NEW.connection_name}")
    with pytest.raises(UrlError):
        point_at_clone_from("postgresql://app:pw@db.example.com/o", [OLD, earlier], NEW)


def backup(hours: float, status: str = "SUCCESSFUL", automated: bool = True) -> Backup:
    at = NOW - timedelta(hours=hours)
    return Backup(str(int(hours)), automated, status, at, at, at + timedelta(minutes=2))


def test_stale_when_the_newest_successful_backup_is_older_than_the_threshold() -> None:
    fresh = [backup(30), backup(2, status="FAILED"), backup(23)]
    assert newest_successful(fresh).id == "23"
    assert not stale(fresh, NOW, 24)
    assert stale([backup(25), backup(1, status="RUNNING")], NOW, 24)
    assert stale([], NOW, 24)
    assert stale([backup(1, status="FAILED")], NOW, 24)


def test_a_pinned_version_gets_a_new_version_latest_gets_a_new_secret() -> None:
    assert secret_target("3") == "new_version"
    assert secret_target("latest") == "new_secret"
