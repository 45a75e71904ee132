"""The runbook's timeouts, held by tests: the cases of ``python -m bench.decisions`` (incidents
in the sandbox, Monitoring 3 minutes late, sandbox time passing like time)."""

from __future__ import annotations

import pytest

from bench.decisions import CASES, Case, run_case

EXPECTED = {  # what decides each row, and the judgements' verdicts in order
    "/healthz failing": ("health", ["rollback"]),
    "error rate 8%": ("minutes", ["rollback"]),
    "P95 2.5 s": ("minutes", ["rollback"]),
    "error rate 3%, stays": ("minutes", ["observe"] * 5 + ["observe_expired"]),
    "error rate 3%, recovers": ("minutes", ["observe"] * 4 + ["proceed"]),
    "stale alert (8% gone)": ("minutes", ["proceed"]),
}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_runbooks_timeouts_are_met_from_the_alert(case: Case) -> None:
    outcome = run_case(case)
    assert outcome.ok, (outcome.rolled_back_after_s, outcome.verdicts)
    assert (outcome.decided_by, outcome.verdicts) == EXPECTED[case.name]
    if case.rollback_within_s is not None and case.rollback_within_s <= 180:
        assert outcome.from_alert_s is not None and outcome.from_alert_s < 5, "at once"


def test_every_row_of_the_issue_is_a_case() -> None:
    assert set(EXPECTED) == {case.name for case in CASES}
