"""/flag SERVICE: the serving revisions' FEATURE_FLAG_* variables beside what the service's
own GET /config/flags answers, each disagreement marked. Reads only; changes nothing."""

from __future__ import annotations

from typing import Any

from bot.ops.context import Deps
from bot.ops.errors import UserError
from bot.policy.flags import compare, flags_in_env
from bot.ports import CloudRunError, Message


def list_flags(deps: Deps, name: str) -> Message:
    service = deps.config.service(name)
    if service is None:
        raise UserError("error.unknown_service", service=name, known=deps.config.service_names)
    ref = deps.service_ref(service)
    try:
        state = deps.cloudrun.get_service(ref)
        serving = state.serving()
        revisions = {r: deps.cloudrun.get_revision(ref, r) for r in sorted(serving)}
    except CloudRunError as error:
        detail = error.detail or error.reason
        raise UserError("error.cloudrun_unavailable", service=name, detail=detail) from None
    url = service.url or state.uri  # the custom domain when there is one, as users reach it
    audience = state.uri.rstrip("/") if service.requires_auth else None
    answer = deps.service_config.flags(url, deps.config.rollback.health_check_timeout_s, audience)
    rows = [_revision_rows(r, serving[r.name], answer.flags) for r in revisions.values()]
    return deps.renderer.message(
        "flag_list",
        service=name,
        revisions=sorted(rows, key=lambda row: -row["percent"]),
        answer={
            "ok": answer.flags is not None,
            "problem": answer.problem,
            "status": answer.status,
            "detail": answer.detail,
        },
        split=len(serving) > 1,
        url=url,
        holder=deps.store.operations.lock_holder(name),
    )


def _revision_rows(revision: Any, percent: int, answer: dict[str, bool] | None) -> dict[str, Any]:
    rows = compare(flags_in_env(revision.env), answer)
    return {
        "revision": revision.name,
        "percent": percent,
        "flags": [
            {
                "name": row.name,
                "env": row.env.text if row.env else None,
                "from_secret": bool(row.env and row.env.from_secret),
                "env_value": row.env.value if row.env else None,
                "said": row.answered,
                "agreement": str(row.agreement),
            }
            for row in rows
        ],
        "mismatches": sum(row.agreement != "match" for row in rows),
    }
