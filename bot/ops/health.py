"""One health probe of a service, the way the platform needs it: through the service's custom
domain when it has one (nothing is reserved there), with an ID token when the service requires
authentication (the audience is the service's own run.app URL)."""

from __future__ import annotations

from bot.config import ServiceConfig
from bot.ops.context import Deps
from bot.policy.gates import HEALTH_PROBLEMS, Observation
from bot.ports import ProbeResult

# ProbeResult.problem values that are configuration problems, never "unhealthy".
CONFIG_PROBLEMS = frozenset({"reserved_path", "ingress_internal", "invoker_denied", "no_id_token"})


def probe_health(
    deps: Deps,
    service: ServiceConfig,
    run_url: str,
    service_url: str = "",
    custom_domain: bool = True,
) -> tuple[str, ProbeResult]:
    """GET the health path. ``run_url``: the service or tag URL Cloud Run gave;
    ``service_url``: the service's own URL (the ID token's audience), default ``run_url``.
    Tag URLs have no custom domain: pass ``custom_domain=False``."""
    base = service.url if custom_domain and service.url else run_url
    url = base.rstrip("/") + service.health_path
    audience = (service_url or run_url).rstrip("/") if service.requires_auth else None
    timeout = deps.config.rollback.health_check_timeout_s
    return url, deps.probe.get(url, timeout, audience=audience)


def config_problem(result: ProbeResult) -> str:
    """ "" or the configuration problem the probe ran into (see CONFIG_PROBLEMS)."""
    return result.problem if result.problem in CONFIG_PROBLEMS else ""


def health_observation(
    probe: ProbeResult, requests: int | None, errors: int | None, p95_ms: float | None
) -> Observation:
    """The decision table's input: a health check that could not be made is no answer."""
    problem = HEALTH_PROBLEMS.get(config_problem(probe))
    healthz_ok = None if problem is not None else probe.ok
    return Observation(healthz_ok, requests, errors, p95_ms, health_problem=problem)
