"""A flag flip's states, steps and the tag its new revision wears while it is checked."""

from __future__ import annotations

FLAG_TAG = "flag"

MAX_STEPS_PER_RUN = 50

# deploying -> applying -> verifying -> shifting -> applying -> watching -> succeeded;
# off the happy path: untagging -> applying -> failed | cancelled (no user saw the revision),
# rolling_back -> applying -> rolled_back (100% back on the revision that served before).
RUNNING_STATES = (
    "deploying",
    "applying",
    "verifying",
    "untagging",
    "shifting",
    "watching",
    "rolling_back",
)

FINAL_STATES = ("succeeded", "rolled_back", "failed", "cancelled")

# The steps the card shows, in order, each with its time.
STEPS = ("deploy", "verify", "shift", "watch")

# States during which traffic may be changing (an emergency rollback takes them over).
TRAFFIC_STATES = ("shifting", "watching", "rolling_back", "applying")
