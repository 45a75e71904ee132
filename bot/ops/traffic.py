"""A traffic update that keeps every other tag: the one helper every workflow builds its Cloud
Run traffic targets with (rollback, release, flag flip, restore, drill).

A traffic PATCH replaces the service's whole list of targets, so a tag left out (``preview``,
say) would be deleted. ``with_other_tags`` adds each tag the service wears that the targets do
not name, kept on its own revision.
"""

from __future__ import annotations

from collections.abc import Collection

from bot.ports import ServiceState, TrafficTarget


def serving_targets(state: ServiceState) -> list[TrafficTarget]:
    """The traffic as it serves now, each target pinned by revision name (without tags: a
    traffic update adds them back with ``with_other_tags``)."""
    return [
        TrafficTarget(revision, percent) for revision, percent in sorted(state.serving().items())
    ]


def with_other_tags(
    targets: list[TrafficTarget],
    state: ServiceState,
    own: Collection[str] = (),
    ride: bool = True,
) -> list[TrafficTarget]:
    """``targets`` plus every other tag on the service (in the service's order), kept on its own
    revision. With ``ride`` a tag rides on an untagged target of its revision when there is one
    (the first such tag only), else it is a target of its own at 0%. ``own``: the workflow's
    own tags (green's, a flip's), kept only where the targets name them."""
    result = list(targets)
    named = {t.tag for t in targets if t.tag}
    for status in state.traffic:
        if not status.tag or status.tag in named or status.tag in own or not status.revision:
            continue
        spare = next(
            (i for i, t in enumerate(result) if t.revision == status.revision and not t.tag), None
        )
        if spare is None or not ride:
            result.append(TrafficTarget(status.revision, 0, status.tag))
        else:
            result[spare] = TrafficTarget(status.revision, result[spare].percent, status.tag)
        named.add(status.tag)
    return result


def pinned_targets(
    state: ServiceState, target: str, drop: Collection[str] = ()
) -> list[TrafficTarget]:
    """100% on ``target``, pinned by name; every existing tag kept on its own revision (the
    first of ``target``'s own riding on it), but those in ``drop`` (the new revision's tag of a
    release or flip that stood aside for a rollback)."""
    return with_other_tags([TrafficTarget(target, 100)], state, own=drop)
