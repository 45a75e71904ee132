"""Which revision a rollback goes to: the word typed, or the runbook's choice."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bot.config import ServiceConfig
from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.ops.rollback.requested import RollbackRequest
from bot.policy.revision_words import WordKind, read_revision_word
from bot.policy.targets import (
    TargetChoice,
    choose_target,
    current_revision,
    still_rolled_back,
)
from bot.ports import CloudRunError, Revision, ServiceState


def read_service(
    deps: Deps, service: ServiceConfig, user: str
) -> tuple[ServiceState, list[Revision]]:
    ref = deps.service_ref(service)
    try:
        return deps.cloudrun.get_service(ref), deps.cloudrun.list_revisions(ref)
    except CloudRunError as error:
        detail = error.detail or error.reason
        deps.audit(
            user,
            "rollback.refused",
            "refused",
            service=service.name,
            why="cloudrun_unavailable",
            detail=detail,
        )
        raise UserError("error.cloudrun_unavailable", service=service.name, detail=detail) from None


def check_words(deps: Deps, request: RollbackRequest, service: ServiceConfig) -> RollbackRequest:
    """A typed command read against the real revisions before anything else happens (before a
    pending request is pre-empted, or a running release taken back): the revision it names
    must exist and be one a rollback can go to. Returns the request as read (its revision, if
    it names one); raises UserError (audited), with nothing changed, on bad input."""
    if not request.from_command or request.revision or not request.reason.split():
        return request
    state, revisions = read_service(deps, service, request.user)
    request = resolve_revision_word(deps, request, service, revisions)
    if request.revision:
        pick_target(deps, request, service, state, revisions)
    return request


def resolve_revision_word(
    deps: Deps, request: RollbackRequest, service: ServiceConfig, revisions: list[Revision]
) -> RollbackRequest:
    """A typed command's first reason word, read against the real revisions: the revision it
    names exactly (then the reason is the rest), the start of the reason, or bad input."""
    words = request.reason.split(maxsplit=1)
    if not request.from_command or request.revision or not words:
        return request
    names = [r.name for r in revisions]
    reading = read_revision_word(words[0], service.name, names, deps.config.service_names)
    if reading.kind is WordKind.REASON:
        return request
    if reading.kind is WordKind.REVISION:
        rest = words[1] if len(words) > 1 else ""
        return replace(request, revision=reading.revision, reason=rest)
    deps.audit(
        request.user,
        "rollback.refused",
        "refused",
        service=service.name,
        revision=words[0],
        why=str(reading.kind),
        suggestions=list(reading.suggestions),
    )
    raise UserError(
        f"error.target.{reading.kind}",
        service=service.name,
        revision=words[0],
        owner=reading.owner,
        suggestions=list(reading.suggestions),
        digits=words[0].isdigit(),
        recent=_recent(deps, revisions, {}),
    )


def pick_target(
    deps: Deps,
    request: RollbackRequest,
    service: ServiceConfig,
    state: ServiceState,
    revisions: list[Revision],
) -> tuple[TargetChoice, str | None]:
    serving = state.serving()
    choice = target_choice(
        deps, service.name, revisions, serving, request.revision, request.automatic
    )
    if choice.revision is None or choice.problem is not None:
        deps.audit(
            request.user,
            "rollback.refused",
            "refused",
            service=service.name,
            revision=request.revision or (choice.revision.name if choice.revision else ""),
            why=str(choice.problem),
        )
        raise UserError(
            f"error.target.{choice.problem}",
            service=service.name,
            revision=request.revision or (choice.revision.name if choice.revision else ""),
            why=choice.revision.ready_message if choice.revision else "",
            alternative=choice.alternative.name if choice.alternative else "",
            rolled_back=list(choice.rolled_back),
            suggestion=choice.suggestion,
            recent=_recent(deps, revisions, serving),
        )
    return choice, current_revision(serving)


def target_choice(
    deps: Deps,
    service: str,
    revisions: list[Revision],
    serving: dict[str, int],
    named: str | None,
    automatic: bool,
    also_bad: frozenset[str] = frozenset(),
) -> TargetChoice:
    """The one place that decides where a rollback of ``service`` goes: every rollback, and
    every card or check that says where one would go (``next_target``), asks it.

    A person is told when the revision to go back to is not ready; Runback acting alone for an
    incident goes on to the next ready one (and the card says so). A revision rolled back from
    is not picked again until someone puts it back (names it, or a release keeps it as blue)."""
    events = deps.store.serving.serving_events(service)
    served = list(dict.fromkeys(r for r, kind in events if kind == "served"))
    rolled_back = still_rolled_back(events)
    return choose_target(
        revisions,
        serving,
        served,
        frozenset(rolled_back) | also_bad,
        named,
        skip_not_ready=automatic,
        just_left=rolled_back[0] if rolled_back else "",
    )


def next_target(
    deps: Deps, service: str, revisions: list[Revision], serving: dict[str, int]
) -> TargetChoice:
    """Where the automatic rollback of ``service`` would go now: what cards and checks announce."""
    return target_choice(deps, service, revisions, serving, None, automatic=True)


def _recent(deps: Deps, revisions: list[Revision], serving: dict[str, int]) -> list[dict[str, Any]]:
    return [revision_view(deps, r, serving.get(r.name, 0)) for r in revisions[:6]]


def revision_view(deps: Deps, revision: Revision | None, percent: int = 0) -> dict[str, Any]:
    if revision is None:
        return {"revision": "", "image": "", "age_s": None, "ready": False, "percent": 0}
    age = (deps.clock.now() - revision.created).total_seconds()
    return {
        "revision": revision.name,
        "image": revision.image,
        "age_s": age,
        "ready": revision.ready,
        "percent": percent,
    }
