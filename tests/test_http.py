"""The bot's HTTP surface: only requests signed by Slack, fresh, get through; nothing else acts."""

from __future__ import annotations

import time

import pytest

from bot.sandbox.console import Sandbox
from bot.sandbox.slack_payloads import signed_headers


def _no_side_effects(box: Sandbox) -> None:
    box.runtime.engine.wait_idle()
    assert box.emulator.router.calls.list("run.services.patch") == []
    assert box.emulator.slack.messages() == []
    assert box.runtime.deps.store.journal.audit() == []


def _post(box: Sandbox, body: str, headers: dict[str, str]) -> int:
    return box.http.post(box.bot_url, data=body.encode(), headers=headers, timeout=5).status_code


@pytest.fixture
def rollback_body(sandbox: Sandbox) -> str:
    sandbox.run_line("as ana")
    return sandbox.slash_body("/rollback wa-backend")


def test_forged_signature_is_rejected(sandbox: Sandbox, rollback_body: str) -> None:
    headers = signed_headers("not-the-signing-secret", rollback_body)
    assert _post(sandbox, rollback_body, headers) == 401
    _no_side_effects(sandbox)


def test_tampered_body_is_rejected(sandbox: Sandbox, rollback_body: str) -> None:
    headers = signed_headers(sandbox.signing_secret, rollback_body)
    tampered = rollback_body.replace("U0ANA", "U0LUIS")
    assert _post(sandbox, tampered, headers) == 401
    _no_side_effects(sandbox)


def test_stale_timestamp_is_rejected(sandbox: Sandbox, rollback_body: str) -> None:
    six_minutes_ago = int(time.time()) - 6 * 60
    headers = signed_headers(sandbox.signing_secret, rollback_body, timestamp=six_minutes_ago)
    assert _post(sandbox, rollback_body, headers) == 401
    _no_side_effects(sandbox)


@pytest.mark.parametrize("missing", ["X-Slack-Signature", "X-Slack-Request-Timestamp"])
def test_missing_headers_are_rejected(sandbox: Sandbox, rollback_body: str, missing: str) -> None:
    headers = signed_headers(sandbox.signing_secret, rollback_body)
    del headers[missing]
    assert _post(sandbox, rollback_body, headers) == 401
    _no_side_effects(sandbox)


def test_valid_signature_is_accepted(sandbox: Sandbox, rollback_body: str) -> None:
    headers = signed_headers(sandbox.signing_secret, rollback_body)
    assert _post(sandbox, rollback_body, headers) == 200
    sandbox.runtime.engine.wait_idle()
    assert len(sandbox.emulator.router.calls.list("run.services.patch")) == 1


def test_healthz_and_unknown_routes(sandbox: Sandbox) -> None:
    base = sandbox.bot_url.removesuffix("/slack/events")
    for path in ("/health", "/healthz"):  # /health: *.run.app answers /healthz itself
        health = sandbox.http.get(f"{base}{path}", timeout=5)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert sandbox.http.get(f"{base}/nope", timeout=5).status_code == 404
    assert sandbox.http.get(sandbox.bot_url, timeout=5).status_code == 405


def test_warm_up_prepares_every_google_client_before_the_first_command(sandbox: Sandbox) -> None:
    deps = sandbox.runtime.deps
    adapters = [deps.cloudrun, deps.metrics, deps.audit_sink]  # the probe needs no library
    assert not any(adapter.ready for adapter in adapters)  # type: ignore[attr-defined]
    sandbox.runtime.warm_up()
    assert all(adapter.ready for adapter in adapters)  # type: ignore[attr-defined]
    assert sandbox.emulator.router.calls.list("run.services.patch") == [], "no side effect"


def test_the_warm_up_steps_aside_while_commands_are_being_answered(sandbox: Sandbox) -> None:
    """The warm-up is seconds of CPU: run during a burst of commands, it made every ack wait its
    turn for Python's one running thread (the bench's /traffic ack p99 doubled). It goes on only
    in quiet moments."""
    import threading
    import time

    deps, engine = sandbox.runtime.deps, sandbox.runtime.engine
    assert engine.wait_idle()
    release = engine.hold()  # a command being answered
    warming = threading.Thread(target=sandbox.runtime.warm_up, kwargs={"quiet_s": 0.05})
    warming.start()
    time.sleep(0.5)
    assert warming.is_alive() and not deps.cloudrun.ready, "nothing warmed while busy"  # type: ignore[attr-defined]
    release()
    warming.join(timeout=60)
    assert not warming.is_alive() and deps.cloudrun.ready  # type: ignore[attr-defined]


def test_a_burst_of_short_commands_is_no_quiet_moment_for_the_warm_up(sandbox: Sandbox) -> None:
    """Between two acks of a burst no handler runs for a millisecond or two: the warm-up took
    those gaps for quiet moments and compiled templates between the acks (seen in a py-spy
    profile of the bench's /ops help series). Quiet is now nothing begun or ended for quiet_s."""
    import threading
    import time

    from bot import render

    engine, env = sandbox.runtime.engine, sandbox.runtime.deps.renderer.env
    assert engine.wait_idle()
    render._compiled.cache_clear()
    env.cache.clear()  # type: ignore[union-attr]

    def warmed() -> int:
        return len(env.cache or {}) + render._compiled.cache_info().currsize

    bursting = threading.Event()
    bursting.set()

    def burst() -> None:
        while bursting.is_set():
            engine.hold()()  # a command answered: begun and ended at once
            time.sleep(0.005)

    commands = threading.Thread(target=burst)
    commands.start()
    warming = threading.Thread(target=sandbox.runtime.warm_up, kwargs={"quiet_s": 0.1})
    try:
        warming.start()
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            assert warmed() <= 1, "warmed between the acks"
            time.sleep(0.01)
        assert not engine.quiet_for(0.1)
    finally:
        bursting.clear()
        commands.join()
    warming.join(timeout=60)
    assert not warming.is_alive() and warmed() > 100
    assert engine.quiet_for(0.0)


def test_what_the_process_loaded_is_frozen_out_of_the_garbage_collectors_walks(
    sandbox: Sandbox,
) -> None:
    """A full collection walked every module, template and client (over 100 ms holding
    Python's one running thread), and one falling in a burst of commands doubled the acks' p99.
    `serve` collects once and freezes what is left after loading, and again after warming up."""
    import gc

    from bot import serving

    gc.unfreeze()
    try:
        serving._warm_up(sandbox.runtime)
        assert sandbox.runtime.deps.cloudrun.ready  # type: ignore[attr-defined]
        frozen = gc.get_freeze_count()
        assert frozen > 100_000, "the libraries and templates are out of the collector's walks"
        assert len(gc.get_objects(generation=2)) < frozen / 10
    finally:
        gc.unfreeze()
