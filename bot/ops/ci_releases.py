"""``POST /ci/releases``: CI registers a release candidate (an image and its migration).

``/deploy`` then finds the candidate's verdict by service and image. For a staging service the
approval matrix's deploy to staging is "automatic when CI passes": the staging release starts
at once and its card goes to the team channel (``channels.releases``, else incidents). A
production candidate is only registered. A payload that is not exactly the contract (unknown or
missing fields, wrong types, an unknown service, a bad image, oversized SQL) gets a 4xx with the
reason, and nothing is stored.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.ops.context import Deps
from bot.ops.engine import Engine
from bot.ops.errors import UserError
from bot.ops.release import ReleaseRequest, request_release
from bot.ops.release.request import IMAGE, NeedsConfirmation, ci_may_start, registry_problem
from bot.ops.release_migrations import register_candidate
from bot.policy.images import parse_image
from bot.policy.migrations import MAX_SQL_CHARS
from bot.policy.release_migrations import flag_problem

CI_ACTOR = "CI"  # shown as is on cards ("requested by CI")
# bytes: MAX_SQL_CHARS of SQL fit whatever their JSON encoding (\uXXXX takes 6 bytes a
# character); longer SQL in a body under this gets a 400 that names the limit.
MAX_CI_BODY = 6 * MAX_SQL_CHARS + 64 * 1024


class CiRelease(BaseModel):
    """The contract, strictly: no other field, no coercion (``"commit": 123`` is refused)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    service: str = Field(min_length=1, max_length=64)
    image: str = Field(min_length=1, max_length=255)
    commit: str = Field(pattern=r"^[0-9a-f]{7,40}$")
    migration_sql: str = Field(max_length=MAX_SQL_CHARS)  # "" for a release without one
    dialect: Literal["postgres", "mysql"] = "postgres"
    feature_flag: str = ""  # FEATURE_FLAG_...: what a destructive migration hides behind


class Refused(Exception):
    def __init__(self, status: int, error: str, **detail: Any) -> None:
        super().__init__(error)
        self.status, self.error, self.detail = status, error, detail


def handle_ci_release(deps: Deps, engine: Engine, body: bytes) -> tuple[int, dict[str, Any]]:
    """201 with the candidate's verdict (and the staging release, if one started); 4xx with
    the reason otherwise, and then nothing was stored."""
    try:
        payload = _payload(body)
        _check(deps, payload)
    except Refused as refused:
        deps.audit(CI_ACTOR, "release.candidate_refused", "refused", why=refused.error[:300])
        return refused.status, {"error": refused.error, **refused.detail}
    with engine.track():
        candidate = register_candidate(
            deps,
            service=payload.service,
            image=payload.image,
            sql=payload.migration_sql,
            dialect=payload.dialect,
            source="ci",
            by=CI_ACTOR,
            commit=payload.commit,
            flag=payload.feature_flag,
        )
        release = _start_staging(deps, engine, payload)
    answer = {
        "candidate": candidate.id,
        "service": payload.service,
        "image": payload.image,
        "verdict": candidate.verdict,
        "statements": [
            {"line": s.get("line"), "verdict": s.get("verdict"), "rule": s.get("rule")}
            for s in candidate.statements
        ],
        "release": release,
    }
    return 201, answer


def _payload(body: bytes) -> CiRelease:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "a JSON object is expected: {service, image, commit, migration_sql}")
    try:
        return CiRelease.model_validate(data)
    except ValidationError as error:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "problem": e["msg"]}
            for e in error.errors(include_url=False, include_input=False)
        ]
        raise Refused(400, "the payload does not match the contract", problems=problems) from None


def _check(deps: Deps, payload: CiRelease) -> None:
    service = deps.config.service(payload.service)
    if service is None:
        raise Refused(422, f"unknown service {payload.service!r}", known=deps.config.service_names)
    if (
        not IMAGE.fullmatch(payload.image)
        or ".." in payload.image
        or not parse_image(payload.image)
    ):
        raise Refused(422, f"{payload.image!r} is not a container image reference")
    allowed = registry_problem(deps, service, payload.image)
    if allowed is not None:
        raise Refused(
            422,
            f"{payload.image!r} is not from a registry {service.name} may release from",
            allowed=list(allowed),
        )
    if payload.feature_flag and flag_problem(payload.feature_flag):
        raise Refused(
            422, f"{payload.feature_flag!r} is not a feature flag name (FEATURE_FLAG_...)"
        )


def _start_staging(deps: Deps, engine: Engine, payload: CiRelease) -> dict[str, Any] | None:
    """Staging: the release starts now (the matrix's "automatic when CI passes"); production:
    None, the candidate waits for ``/deploy``."""
    service = deps.managed_service(payload.service)
    if not ci_may_start(deps, service):
        return None
    request = ReleaseRequest(
        service=service.name,
        image=payload.image,
        user=CI_ACTOR,
        channel=deps.config.channels.team.id,
        flag=payload.feature_flag,
        from_ci=True,
    )
    try:
        operation = request_release(deps, request)
    except UserError as error:  # busy, a destructive migration without its flag, ...
        return {"started": False, "why": error.key}
    except NeedsConfirmation:
        return {"started": False, "why": "needs_confirmation"}
    engine.submit(operation.id)
    return {"started": True, "operation": operation.id, "green": operation.to_revision}
