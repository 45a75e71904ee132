"""Before any user sees it: the new revision's health and its own /config/flags, on its tag
URL. Either failing means it never gets traffic."""

from __future__ import annotations

from typing import Any

from bot.ops.context import Deps
from bot.ops.flags.states import FlagData
from bot.ops.health import config_problem, probe_health
from bot.store import Operation


def verify_tag(deps: Deps, operation: Operation) -> dict[str, Any] | None:
    """None when the tag URL is healthy and reads the flag as set; else the outcome to end on."""
    service = deps.managed_service(operation.service)
    flip = FlagData.of(operation)
    tag_uri = flip.tag_uri
    service_uri = flip.service_uri or tag_uri
    for _ in range(deps.config.release.smoke_checks):
        _, result = probe_health(
            deps, service, tag_uri, service_url=service_uri, custom_domain=False
        )
        if config_problem(result):
            return {"code": result.problem, "check": service.health_path}
        if not result.ok:
            seen = (result.detail or "")[:200]
            return {
                "code": "unhealthy",
                "check": service.health_path,
                "status": result.status,
                "seen": seen,
            }
    audience = service_uri.rstrip("/") if service.requires_auth else None
    timeout = deps.config.rollback.health_check_timeout_s
    answer = deps.service_config.flags(tag_uri, timeout, audience=audience)
    if answer.flags is None:
        return {
            "code": "flags_unreadable",
            "problem": answer.problem,
            "status": answer.status,
            "seen": answer.detail[:200],
        }
    said = answer.flags.get(flip.flag)
    if said is not flip.value:
        return {"code": "flag_not_read", "said": said}
    return None
