"""An on-demand backup's states.

awaiting_approval (only if the matrix asks for one) -> starting -> backing_up -> succeeded |
failed (or rejected / expired / cancelled).
"""

from __future__ import annotations

KIND = "backup"
RUNNING_STATES = ("starting", "backing_up")
FINAL_STATES = ("succeeded", "failed", "rejected", "expired", "cancelled")
