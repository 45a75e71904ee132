"""Every sandbox timestamp comes from the sandbox's clock (issue 20): the console's alert, and
the revisions Cloud Run creates after a `wait`."""

from __future__ import annotations

from datetime import timedelta

from bot.sandbox.console import Sandbox
from tests.helpers import run


def test_the_console_alert_starts_on_sandbox_time(sandbox: Sandbox) -> None:
    run(sandbox, "set wa-backend-00003 error_rate=0.07", "wait 9m", "alert wa-backend")
    record = sandbox.runtime.deps.store.incidents.open_incidents()[0]
    started = record.started_at
    now = sandbox.clock.now()
    assert now - timedelta(minutes=2) <= started.replace(tzinfo=now.tzinfo) <= now, (started, now)


def test_a_revision_created_after_a_wait_is_new_not_as_old_as_the_wait(sandbox: Sandbox) -> None:
    image = "us-docker.pkg.dev/runback-sandbox/apps/wa-backend:v1.3.0"
    run(sandbox, "wait 30m", "as marta", f"/deploy wa-backend {image}")
    deps = sandbox.runtime.deps
    service = deps.config.service("wa-backend")
    newest = deps.cloudrun.list_revisions(deps.service_ref(service))[0]
    assert newest.name.startswith("wa-backend-00004")
    age = sandbox.clock.now() - newest.created
    assert timedelta(0) <= age < timedelta(minutes=1), age
