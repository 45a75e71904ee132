"""The rollback-readiness checklist's items as pure functions: each ✅ / ⚠️ / ❌ from its
evidence, with the clock passed in. No I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bot.policy import readiness as r
from bot.policy.credentials import looks_like_credential
from bot.policy.readiness import Mark
from bot.ports import EnvVar, ProbeResult, Revision

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def rev(name: str, hours_old: float, ready: bool = True, message: str = "") -> Revision:
    return Revision(name, f"img:{name}", NOW - timedelta(hours=hours_old), ready, message)


REVISIONS = [rev("s-00003", 1), rev("s-00002", 24), rev("s-00001", 72)]  # newest first


# -- blue ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("serving", "last", "mark", "why"),
    [
        ({"s-00003": 100}, r.LastChange("release", "s-00003", NOW, "op1"), Mark.OK, "last_release"),
        (
            {"s-00002": 100},
            r.LastChange("rollback", "s-00002", NOW, "op2"),
            Mark.OK,
            "last_rollback",
        ),
        ({"s-00003": 100}, r.LastChange("release", "s-00002", NOW, "op1"), Mark.FAIL, "outside"),
        ({"s-00003": 100}, None, Mark.WARN, "no_history"),
        ({"s-00003": 90, "s-00004": 10}, None, Mark.WARN, "split"),
        ({}, None, Mark.WARN, "split"),
    ],
)
def test_blue_is_the_last_release_runback_made(
    serving: dict[str, int], last: r.LastChange | None, mark: Mark, why: str
) -> None:
    item = r.blue(serving, last)
    assert (item.key, item.mark, item.why) == ("blue", mark, why)


# -- earlier revisions -----------------------------------------------------------------------


def test_earlier_ready_revisions_pass_and_name_the_rollback_target() -> None:
    item = r.revisions(REVISIONS, {"s-00003": 100})
    assert (item.mark, item.why) == (Mark.OK, "ready")
    assert item.facts == {"retained": 2, "ready": 2, "target": "s-00002"}


def test_a_previous_revision_that_is_not_ready_is_a_warning_naming_the_next() -> None:
    revisions = [REVISIONS[0], rev("s-00002", 24, False, "container failed"), REVISIONS[2]]
    item = r.revisions(revisions, {"s-00003": 100})
    assert (item.mark, item.why) == (Mark.WARN, "previous_not_ready")
    assert item.facts["target"] == "s-00001" and item.facts["message"] == "container failed"


@pytest.mark.parametrize(
    ("revisions", "why"),
    [
        ([REVISIONS[0]], "none_retained"),
        ([REVISIONS[0], rev("s-00002", 24, False), rev("s-00001", 72, False)], "none_ready"),
    ],
)
def test_nothing_to_roll_back_to_fails(revisions: list[Revision], why: str) -> None:
    item = r.revisions(revisions, {"s-00003": 100})
    assert (item.mark, item.why) == (Mark.FAIL, why)


def test_older_revisions_count_even_when_an_older_one_serves() -> None:
    """After a rollback, blue is older than the newest revision: only older ones are kept ones."""
    item = r.revisions(REVISIONS, {"s-00002": 100})
    assert (item.mark, item.facts["retained"], item.facts["target"]) == (Mark.OK, 1, "s-00001")


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_from_secret_manager_pass() -> None:
    env = (
        EnvVar("DATABASE_URL", secret="db-url", secret_version="latest"),
        EnvVar("LOG_LEVEL", "info"),
        EnvVar("FEATURE_FLAG_X", "true"),
    )
    item = r.secrets(env)
    assert (item.mark, item.facts["secret_names"]) == (Mark.OK, ["DATABASE_URL"])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DB_PASSWORD", "hunter2"),
        ("STRIPE_API_KEY", "abc"),
        ("SLACK_SIGNING_SECRET", "abc"),
        ("GITHUB_TOKEN", "abc"),
        ("DATABASE_URL", "postgresql://app:s3cret@10.0.0.3/app"),
        ("SOMETHING", "xoxb-1234567890-abcdefghij"),
        ("CONFIG", '{"type": "service_account", "private_key": "x"}'),
        ("AWS_ID", "AKIAIOSFODNN7EXAMPLE"),
    ],
)
def test_a_plain_credential_fails_naming_it_without_its_value(name: str, value: str) -> None:
    item = r.secrets((EnvVar(name, value), EnvVar("OK", "1")))
    assert (item.mark, item.why, item.facts["names"]) == (Mark.FAIL, "plain", [name])
    assert value not in repr(item.facts)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "postgresql:///app?host=/cloudsql/p:r:i"),  # IAM auth, no password
        ("KEYBOARD_LAYOUT", "us"),
        ("TOKEN_TTL", ""),  # empty: holds nothing
        ("PUBLIC_URL", "https://example.com/a:b"),
    ],
)
def test_harmless_plain_variables_pass(name: str, value: str) -> None:
    assert not looks_like_credential(name, value) or not value
    assert r.secrets((EnvVar(name, value),)).mark is Mark.OK


# -- feature flags ---------------------------------------------------------------------------


def env_of(**flags: str) -> tuple[EnvVar, ...]:
    return tuple(EnvVar(f"FEATURE_FLAG_{name}", value) for name, value in flags.items())


def test_flags_that_answer_and_match_pass() -> None:
    env = (
        *env_of(NEW_CHECKOUT="true"),
        EnvVar("FEATURE_FLAG_HIDDEN", secret="s", secret_version="1"),  # not declared
        EnvVar("OTHER", "true"),
    )
    item = r.flags(env, {"NEW_CHECKOUT": True, "EXTRA": False})  # EXTRA: the service's default
    assert (item.mark, item.why, item.facts["declared"]) == (Mark.OK, "match", 1)


@pytest.mark.parametrize(
    ("env", "answer", "differences"),
    [
        (env_of(A="true"), {"A": False}, [{"name": "A", "env": True, "service": False}]),
        (env_of(A="1"), {}, [{"name": "A", "env": True, "service": "missing"}]),
        (env_of(A="maybe"), {"A": True}, [{"name": "A", "env": None, "service": True}]),
    ],
)
def test_flags_that_differ_from_the_environment_fail(
    env: tuple[EnvVar, ...], answer: dict[str, bool], differences: list[object]
) -> None:
    item = r.flags(env, answer)
    assert (item.mark, item.why, item.facts["differences"]) == (Mark.FAIL, "mismatch", differences)


def test_unreadable_flags_fail_when_flags_are_declared_and_warn_when_none_are() -> None:
    assert r.flags(env_of(A="true"), "HTTP 404").mark is Mark.FAIL
    item = r.flags((), "HTTP 404")
    assert (item.mark, item.why, item.facts["detail"]) == (Mark.WARN, "unreadable", "HTTP 404")


# -- backups ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("newest", "mark", "why"),
    [
        (NOW - timedelta(hours=23, minutes=59), Mark.OK, "recent"),
        (NOW - timedelta(hours=24, minutes=1), Mark.FAIL, "old"),
        (None, Mark.FAIL, "none"),
        (r.NO_DATABASE, Mark.WARN, "not_configured"),
    ],
)
def test_the_newest_backup_is_younger_than_a_day(
    newest: datetime | r.NoDatabase | None, mark: Mark, why: str
) -> None:
    item = r.backup(newest, NOW, 24)
    assert (item.mark, item.why) == (mark, why)


# -- disaster-recovery runbook ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reviewed", "mark", "why"),
    [
        ("https://x/dr", date(2026, 9, 1), Mark.OK, "current"),  # 90 days
        ("https://x/dr", date(2026, 8, 31), Mark.FAIL, "stale"),  # 91 days
        ("https://x/dr", date(2026, 12, 1), Mark.WARN, "future"),
        ("https://x/dr", None, Mark.FAIL, "no_date"),
        ("", date(2026, 11, 1), Mark.FAIL, "missing"),
    ],
)
def test_the_dr_runbook_was_reviewed_within_90_days(
    url: str, reviewed: date | None, mark: Mark, why: str
) -> None:
    item = r.dr_runbook(url, reviewed, NOW.date(), 90)
    assert (item.mark, item.why) == (mark, why)


# -- acknowledgements ------------------------------------------------------------------------

TEAM = {"on_call": frozenset({"U0ANA"}), "tech_lead": frozenset({"U0LUIS", "U0SOFIA"})}


def test_everyone_of_each_role_acknowledged_passes() -> None:
    item = r.acknowledged(True, TEAM, frozenset({"U0ANA", "U0LUIS", "U0SOFIA", "U0EVE"}))
    assert (item.mark, item.why) == (Mark.OK, "everyone")
    assert [(row["role"], row["acked"], row["total"]) for row in item.facts["roles"]] == [
        ("on_call", 1, 1),
        ("tech_lead", 2, 2),
    ]


def test_someone_missing_is_a_warning_that_names_them() -> None:
    item = r.acknowledged(True, TEAM, frozenset({"U0ANA", "U0LUIS"}))
    assert (item.mark, item.why) == (Mark.WARN, "missing")
    assert item.facts["roles"][1]["missing"] == ["U0SOFIA"]


def test_a_role_nobody_of_which_acknowledged_fails() -> None:
    assert r.acknowledged(True, TEAM, frozenset({"U0LUIS"})).why == "none_of_role"
    assert r.acknowledged(True, TEAM, frozenset({"U0LUIS"})).mark is Mark.FAIL


def test_a_procedure_never_posted_fails() -> None:
    item = r.acknowledged(False, TEAM, frozenset())
    assert (item.mark, item.why) == (Mark.FAIL, "not_posted")


# -- the last drill --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "mark", "why"),
    [
        (r.LastDrill("stg", NOW - timedelta(days=31), True, 2.0), Mark.OK, "passed"),
        (r.LastDrill("stg", NOW - timedelta(days=31, hours=1), True, 2.0), Mark.FAIL, "old"),
        (r.LastDrill("stg", NOW - timedelta(days=1), False), Mark.FAIL, "failed"),
        (None, Mark.FAIL, "never"),
    ],
)
def test_the_last_drill_passed_within_31_days(
    last: r.LastDrill | None, mark: Mark, why: str
) -> None:
    item = r.drill(last, NOW, 31)
    assert (item.mark, item.why) == (mark, why)


# -- the health path -------------------------------------------------------------------------

OK = ProbeResult(True, 200, "ok", 5.0)


def test_a_reserved_health_path_fails_without_a_request() -> None:
    assert r.health_path_item("/healthz", custom_domain=False) == r.Item(
        "health", Mark.FAIL, "reserved", {"path": "/healthz"}
    )
    assert r.health_path_item("/healthz", custom_domain=True) is None  # nothing reserved there
    assert r.health_path_item("/health", custom_domain=False) is None


@pytest.mark.parametrize(
    ("probe", "mark", "why"),
    [
        (OK, Mark.OK, "answers"),
        (
            ProbeResult(False, 404, "Error 404 (Not Found)!!1", 3.0, "reserved_path"),
            Mark.FAIL,
            "reserved",
        ),
        (ProbeResult(False, 403, "", 3.0, "invoker_denied"), Mark.FAIL, "invoker_denied"),
        (ProbeResult(False, 503, "down", 3.0), Mark.FAIL, "fails"),
        (ProbeResult(False, None, "timeout", 3000.0), Mark.FAIL, "fails"),
    ],
)
def test_the_health_path_answers(probe: ProbeResult, mark: Mark, why: str) -> None:
    item = r.health("/health", False, probe)
    assert (item.mark, item.why) == (mark, why)


def test_evidence_not_gathered_is_never_a_pass() -> None:
    assert r.not_gathered("backup", 4.0).mark is Mark.WARN
    assert r.unavailable("revisions", "503").mark is Mark.WARN
    items = [r.not_gathered("blue", 1.0), r.drill(None, NOW, 31)]
    assert [i.key for i in r.failing(items)] == ["drill"]
