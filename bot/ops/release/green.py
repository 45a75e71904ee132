"""Green's own URLs: its health path on the tag URL, and the ID token audience when the
service requires authentication."""

from __future__ import annotations

from bot.ops.context import Deps
from bot.ops.health import probe_health
from bot.ops.release.states import ReleaseData
from bot.ports import ProbeResult
from bot.store import Operation


def probe_green(deps: Deps, operation: Operation) -> tuple[str, ProbeResult]:
    """Green's health path on its tag URL (a run.app URL: no custom domain reaches a tag)."""
    service = deps.managed_service(operation.service)
    release = ReleaseData.of(operation)
    return probe_health(
        deps,
        service,
        release.green_uri,
        service_url=release.service_uri or release.green_uri,
        custom_domain=False,
    )


def green_audience(deps: Deps, operation: Operation) -> str | None:
    """The audience of the ID token a probe of green carries: the service's own URL."""
    if not deps.managed_service(operation.service).requires_auth:
        return None
    release = ReleaseData.of(operation)
    return (release.service_uri or release.green_uri).rstrip("/")
