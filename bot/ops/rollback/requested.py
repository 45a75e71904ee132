"""A rollback as somebody asked for it (``/rollback``, an incident, a drill, a card's button),
and the question a repeat soon after one asks first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RollbackRequest:
    service: str
    revision: str | None
    reason: str
    user: str
    channel: str
    automatic: bool = False  # Runback itself, for an incident, on behalf of the on-call policy
    # Typed as `/rollback SERVICE [WORD] ...`: the reason's first word may name a revision (read
    # against the real revision list), and a repeat soon after a rollback asks first.
    from_command: bool = False
    # The operation (a rollback drill) that holds the service and hands it to this rollback.
    parent: str = ""
    # An emergency's: the release, flip or drill that stood aside for it (it ended, keeping the
    # service's lock for this rollback), and the tag of its new revision, which this removes.
    takes_over: str = ""
    drop_tag: str = ""


class RepeatNeedsConfirmation(Exception):
    """A `/rollback SERVICE` soon after a rollback of that service: nothing was changed, the
    user is asked to confirm the revision it would now pick. ``context`` is the plain data of
    that question (see ``rollback_repeat.json.j2``)."""

    def __init__(self, **context: Any) -> None:
        super().__init__("repeat_needs_confirmation")
        self.context = context
