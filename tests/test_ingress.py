"""Ingress-restricted services: with `internal` or `internal-and-cloud-load-balancing` ingress,
a request from outside the VPC never reaches the service's run.app URL, tag URL or custom
domain; Google's front end answers it with its own HTML 404. Runback says "ingress is
internal" (never "reserved path"), and works once it has VPC egress."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests

from bot.sandbox.console import Sandbox
from bot.sandbox.emulator.server import Emulator
from tests.conftest import sandbox_config

SERVICE = "wa-backend"
ADVICE = "give Runback VPC egress (Direct VPC) or probe through the load balancer"


@pytest.fixture
def box() -> Iterator[Sandbox]:
    sandbox = Sandbox(sandbox_config(), retry_deadline_s=1.5)
    try:
        yield sandbox
    finally:
        sandbox.close()


@pytest.mark.parametrize("ingress", ["internal", "internal-and-cloud-load-balancing"])
def test_the_front_end_keeps_outside_callers_away_from_an_internal_service(
    box: Sandbox, ingress: str
) -> None:
    emulator: Emulator = box.emulator
    url = f"{emulator.url}/_svc/{SERVICE}"
    assert requests.get(f"{url}/health", timeout=5).status_code == 200
    answer = requests.post(
        f"{emulator.url}/_emulator/services/{SERVICE}/ingress", json={"ingress": ingress}, timeout=5
    )
    assert answer.json() == {"ingress": ingress, "internal_callers": False}
    for path in (f"{url}/health", f"{url}/_tag/none/config/flags", f"{url}/metrics"):
        refused = requests.get(path, timeout=5)
        assert refused.status_code == 404 and "Error 404 (Not Found)!!1" in refused.text
    assert "<code>/health</code>" in requests.get(f"{url}/health", timeout=5).text
    requests.post(
        f"{emulator.url}/_emulator/services/{SERVICE}/ingress",
        json={"internal_callers": True},
        timeout=5,
    )
    assert requests.get(f"{url}/health", timeout=5).status_code == 200, "from the VPC"


def test_a_rollback_of_an_internal_service_says_ingress_not_reserved_path(box: Sandbox) -> None:
    box.emulator.cloudrun.set_ingress(SERVICE, "internal")
    box.run_line("as ana")
    shown = "\n".join(box.run_line(f"/rollback {SERVICE} bad release"))
    assert "ingress is internal" in shown and ADVICE in shown, shown
    assert "reserved" not in shown
    assert box.emulator.cloudrun.traffic(SERVICE)[0]["revision"] == "wa-backend-00002"


def test_a_flag_flip_on_an_internal_service_never_gives_traffic_and_says_why(
    box: Sandbox,
) -> None:
    box.emulator.cloudrun.set_ingress(SERVICE, "internal")
    box.run_line("as marta")
    shown = "\n".join(box.run_line(f"/flag {SERVICE} NEW_CHECKOUT on"))
    assert "ingress is internal" in shown and "never had traffic" in shown, shown
    assert box.emulator.cloudrun.traffic(SERVICE)[0]["revision"] == "wa-backend-00003"


def test_with_vpc_egress_the_internal_service_is_checked_as_usual(box: Sandbox) -> None:
    box.emulator.cloudrun.set_ingress(SERVICE, "internal")
    box.emulator.cloudrun.internal_callers = True
    box.run_line("as ana")
    shown = "\n".join(box.run_line(f"/rollback {SERVICE} bad release"))
    assert "answers 200" in shown, shown


def test_the_checklist_says_ingress_too(box: Sandbox) -> None:
    box.emulator.cloudrun.set_ingress(SERVICE, "internal-and-cloud-load-balancing")
    box.run_line("as ana")
    shown = json.dumps(box.run_line(f"/ops check {SERVICE}"), ensure_ascii=False)
    assert "ingress is internal" in shown, shown
