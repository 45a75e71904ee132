"""The release's states and the tag green wears."""

from __future__ import annotations

GREEN_TAG = "green"


MAX_STEPS_PER_RUN = 50


RUNNING_STATES = (
    "backing_up",
    "deploying",
    "applying",
    "smoke",
    "shifting",
    "judging",
    "finalizing",
    "rolling_back",
)


PEOPLE_STATES = ("awaiting_approval", "needs_human", "paused")


FINAL_STATES = ("succeeded", "rolled_back", "failed", "cancelled")
