"""A restore's states, and the tag its new revision wears until it serves.

(awaiting_approval ->) approved -> creating -> restoring -> checking -> pointing -> deploying ->
smoke -> shifting -> judging -> succeeded; going_back -> rolled_back; failed (or rejected /
expired / cancelled).
"""

from __future__ import annotations

RUNNING_STATES = (
    "approved",
    "creating",
    "restoring",
    "checking",
    "pointing",
    "deploying",
    "smoke",
    "shifting",
    "judging",
    "going_back",
)
FINAL_STATES = ("succeeded", "failed", "rolled_back", "rejected", "expired", "cancelled")
# Before its revision takes traffic: the restore steps aside for an emergency.
BEFORE_TRAFFIC = ("approved", "creating", "restoring", "checking", "pointing", "deploying", "smoke")
SERVING = ("shifting", "judging")  # its revision serves (or is being given the traffic)
RESTORE_TAG = "restored"
