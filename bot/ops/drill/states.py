"""A drill's states, and the tag its test revision wears.

deploying -> deploy_applying -> verifying -> rolling_back -> waiting_rollback ->
checking_metrics -> succeeded (the drill passed) or failed.
"""

from __future__ import annotations

DRILL_TAG = "drill"
RUNNING_STATES = (
    "deploying",
    "deploy_applying",
    "verifying",
    "rolling_back",
    "waiting_rollback",
    "checking_metrics",
)

# The drill holds the service's lock in these states (its rollback holds it while it runs).
HOLDING_STATES = ("deploying", "deploy_applying", "verifying", "rolling_back")
