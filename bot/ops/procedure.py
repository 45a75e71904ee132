"""The rollback procedure, posted for the team with an "I've read it" button (/ops procedure),
and who of each role has acknowledged it (the checklist's "team notified" item).

The procedure's version is a digest of its text as posted: when the text (or a setting it
quotes) changes, earlier acknowledgements no longer count and the team reads it again.
"""

from __future__ import annotations

import hashlib
from typing import Any

from bot.ops.cards import show
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ports import Message


def procedure_version(deps: Deps) -> str:
    text = deps.renderer.text("procedure.body", **_facts(deps))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _facts(deps: Deps) -> dict[str, Any]:
    return {
        "channel": deps.config.channels.incidents.name,
        "thresholds": deps.config.thresholds.model_dump(),
        "dr_url": deps.config.disaster_recovery.url,
    }


def _card(version: str, channel: str) -> str:
    return f"procedure:{version}:{channel}"


def who_must_acknowledge(deps: Deps) -> dict[str, frozenset[str]]:
    """Role -> every user holding it directly or through a user group (app.yaml's
    ``readiness.acknowledge_roles``)."""
    roles = deps.config.readiness.acknowledge_roles
    handles = tuple({h for role in roles for h in deps.config.roles.members(role).groups})
    groups = deps.directory.group_members(handles) if handles else {}
    members: dict[str, frozenset[str]] = {}
    for role in roles:
        config = deps.config.roles.members(role)
        users = set(config.users)
        for handle in config.groups:
            users |= set(groups.get(handle, ()))
        members[role.value] = frozenset(users)
    return members


def acknowledgements(deps: Deps) -> tuple[bool, dict[str, frozenset[str]], frozenset[str]]:
    """(posted?, who must acknowledge by role, who did) for the current procedure."""
    version = procedure_version(deps)
    return (
        deps.store.procedure.procedure_posted(version),
        who_must_acknowledge(deps),
        deps.store.procedure.acknowledgers(version),
    )


def procedure_message(deps: Deps, version: str) -> Message:
    _, members, acked = acknowledgements(deps)
    rows = [
        {"role": role, "acked": sorted(users & acked), "missing": sorted(users - acked)}
        for role, users in members.items()
    ]
    return deps.renderer.message(
        "procedure",
        version=version,
        rows=rows,
        others=sorted(acked - set().union(*members.values())),
        **_facts(deps),
    )


def post_procedure(deps: Deps, user: str, channel: str) -> None:
    """Post (or show again) the current procedure in ``channel`` with its button."""
    version = procedure_version(deps)
    deps.store.procedure.record_procedure(version, user, channel, deps.clock.now())
    deps.audit(user, "procedure.posted", "ok", version=version, channel=channel)
    show(deps, _card(version, channel), channel, procedure_message(deps, version))


def acknowledge(deps: Deps, user: str, version: str, channel: str) -> Message:
    """A click on "I've read it": counted once per person and version; the card shows it."""
    if version != procedure_version(deps):
        raise UserError("procedure.notice.outdated")
    first = deps.store.procedure.acknowledge(version, user, deps.clock.now())
    if first:
        deps.audit(user, "procedure.acknowledged", "ok", version=version)
        show(deps, _card(version, channel), channel, procedure_message(deps, version))
    held = sorted(role for role, users in who_must_acknowledge(deps).items() if user in users)
    return deps.renderer.message(
        "ephemeral", key="procedure.notice.acknowledged", first=first, roles=held
    )
