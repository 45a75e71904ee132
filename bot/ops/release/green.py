"""Green's own URLs: its health path on the tag URL, and the ID token audience when the
service requires authentication."""

from __future__ import annotations

from bot.ops.context import Deps
from bot.ops.health import probe_health
from bot.ports import ProbeResult
from bot.store import Operation


def probe_green(deps: Deps, operation: Operation) -> tuple[str, ProbeResult]:
    """Green's health path on its tag URL (a run.app URL: no custom domain reaches a tag)."""
    service = deps.managed_service(operation.service)
    green_uri = operation.data["green_uri"]
    return probe_health(
        deps,
        service,
        green_uri,
        service_url=operation.data.get("service_uri") or green_uri,
        custom_domain=False,
    )


def green_audience(deps: Deps, operation: Operation) -> str | None:
    """The audience of the ID token a probe of green carries: the service's own URL."""
    if not deps.managed_service(operation.service).requires_auth:
        return None
    return (operation.data.get("service_uri") or operation.data["green_uri"]).rstrip("/")
