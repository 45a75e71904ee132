"""The services' own URLs (``/health``, ``/metrics``, ``/config/flags``), who may call them
(custom domains, IAM), how each revision behaves there, and the logs a failing one writes."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import run_v2

from bot.sandbox.emulator.cloudrun_ingress import GOOGLE_404_HTML
from bot.sandbox.emulator.cloudrun_model import (
    Behaviour,
    State,
    _behaviour_changes,
    _Counters,
    _short,
)
from bot.sandbox.emulator.cloudrun_operations import CloudRunOperations
from bot.sandbox.emulator.http import HttpError, Request, Response, json_response, text_response


class CloudRunServing(CloudRunOperations):
    """What a service's URLs answer, revision by revision, and how to change it."""

    def set_behaviour(self, revision: str, **changes: Any) -> dict[str, Any]:
        """Change some of a revision's behaviour fields; returns the whole behaviour."""
        with self._lock:
            current = self._require_behaviour(revision)
            converted = _behaviour_changes(changes)
            self._fold_counters(revision)
            for key, value in converted.items():
                setattr(current, key, value)
            service = self._service_of(revision)
            self._emit(service)
            self._write_logs(service, revision, current)
            return asdict(current)

    def map_domain(self, host: str, service: str) -> str:
        """Serve ``service`` on custom domain ``host`` too; returns the domain's emulated URL."""
        with self._lock:
            self._find_by_short(service)
            self._domains[host] = service
        return f"{self.base_url}/_domain/{host}"

    def require_auth(self, service: str, required: bool = True) -> None:
        """Make ``service`` answer 403 unless the request carries an ID token for its URL."""
        with self._lock:
            self._find_by_short(service)
            (self._auth_required.add if required else self._auth_required.discard)(service)

    def set_config_flags(
        self, revision: str, flags: dict[str, bool] | None = None, status: int = 200
    ) -> None:
        """Make ``revision``'s ``GET /config/flags`` answer ``flags`` with ``status`` rather
        than its environment; no flags and status 200 restores the environment's answer."""
        with self._lock:
            self._require_behaviour(revision)
            if flags is None and status == 200:
                self._config_answers.pop(revision, None)
            else:
                self._config_answers[revision] = (int(status), flags)

    def revision_flags(self, revision: str) -> dict[str, str]:
        """The ``FEATURE_FLAG_*`` variables of a revision's ingress container, as set (a
        Secret Manager reference shows as ``secret:NAME``)."""
        with self._lock:
            full = f"{self._service_of(revision)}/revisions/{revision}"
            return _feature_flags(self._revisions[full].containers)

    def revisions(self, service_name: str) -> list[dict[str, Any]]:
        """A service's revisions, newest first: name, image, whether Ready, its
        ``FEATURE_FLAG_*`` and its behaviour (the sandbox's web page shows them)."""
        with self._lock:
            self._settle()
            parent = self._find_by_short(service_name).name + "/revisions/"
            owned = [r for r in self._revisions.values() if r.name.startswith(parent)]
            owned.sort(key=lambda r: r.create_time, reverse=True)
            return [
                {
                    "revision": _short(r.name),
                    "image": _ingress_image(r.containers),
                    "ready": any(
                        c.type_ == "Ready" and c.state == State.CONDITION_SUCCEEDED
                        for c in r.conditions
                    ),
                    "flags": _feature_flags(r.containers),
                    "behaviour": asdict(self._behaviours[_short(r.name)]),
                }
                for r in owned
            ]

    # -- the services' own endpoints ----------------------------------------------------------

    def _healthz(self, request: Request) -> Response:
        refused = self._refused_by_ingress(request)
        if refused is not None:
            return refused
        revision, behaviour = self._serve(request)
        status = behaviour.healthz_status
        body = {"status": "ok" if status < 400 else "unhealthy", "revision": revision}
        return Response(status, json.dumps(body).encode(), headers={"X-Serving-Revision": revision})

    def _front_end_404(self, request: Request) -> Response:
        """What Google's front end answers for a reserved path: the container never sees it."""
        page = GOOGLE_404_HTML.format(path="/healthz")
        return text_response(page, 404, "text/html; charset=UTF-8")

    def _metrics(self, request: Request) -> Response:
        refused = self._refused_by_ingress(request)
        if refused is not None:
            return refused
        revision, behaviour = self._serve(request)
        with self._lock:
            ok, errors = self._counts(revision)
        status = 500 if behaviour.healthz_status >= 500 else 200
        response = text_response(
            _prometheus(revision, behaviour, ok, errors), status, "text/plain; version=0.0.4"
        )
        response.headers["X-Serving-Revision"] = revision
        return response

    def _config_flags(self, request: Request) -> Response:
        """The app's own ``GET /config/flags``, from the answering revision's environment."""
        refused = self._refused_by_ingress(request)
        if refused is not None:
            return refused
        revision, behaviour = self._serve(request)
        with self._lock:
            status, flags = self._config_answers.get(revision, (200, None))
            if flags is None:
                full = f"{self._service_of(revision)}/revisions/{revision}"
                env = _feature_flags(self._revisions[full].containers)
                flags = {name: _truthy(value) for name, value in env.items()}
        if behaviour.healthz_status >= 500:
            status = behaviour.healthz_status
        body = {"flags": flags} if status < 400 else {"error": "flags unavailable"}
        response = json_response(body, status)
        response.headers["X-Serving-Revision"] = revision
        return response

    def _serve(self, request: Request) -> tuple[str, Behaviour]:
        """The revision that answers this request, and a copy of its behaviour."""
        params = request.params
        with self._lock:
            self._settle()
            if params.get("host"):
                short = self._domains.get(params["host"])
                if short is None:
                    raise HttpError(404, f"no domain mapping for {params['host']}")
                params = {"service": short}
            service = self._find_by_short(params["service"])
            self._check_invoker(params["service"], request)
            tag = params.get("tag")
            if tag:
                tagged = [s.revision for s in service.traffic_statuses if s.tag == tag]
                if not tagged:
                    raise HttpError(404, f"no tag '{tag}' on service {params['service']}")
                revision = tagged[0]
            else:
                revision = self._pick_weighted(service)
            return revision, Behaviour(**asdict(self._require_behaviour(revision)))

    def _check_invoker(self, short: str, request: Request) -> None:
        """IAM: a protected service needs an ID token whose audience is the service URL."""
        if short not in self._auth_required:
            return
        audience = f"{self.base_url}/_svc/{short}"
        if not self.identity.verify(request.headers.get("authorization", ""), audience):
            raise HttpError(
                403,
                "Error: Forbidden. Your client does not have permission to get URL "
                f"{request.path} from this server.",
            )

    def _pick_weighted(self, service: run_v2.Service) -> str:
        """Smooth weighted round-robin over the actual traffic split (deterministic)."""
        shares: dict[str, int] = {}
        for status in service.traffic_statuses:
            if status.percent:
                shares[status.revision] = shares.get(status.revision, 0) + status.percent
        if not shares:
            raise HttpError(503, "no revision is serving traffic")
        current = self._wrr.setdefault(service.name, {})
        for revision, weight in shares.items():
            current[revision] = current.get(revision, 0) + weight
        chosen = max(shares, key=lambda r: current[r])
        current[chosen] -= sum(shares.values())
        return chosen

    def _counts(self, revision: str) -> tuple[float, float]:
        counters = self._counters.setdefault(revision, _Counters())
        behaviour = self._require_behaviour(revision)
        served = behaviour.rps * max(0.0, time.time() - counters.since)
        errors = served * behaviour.error_rate
        return counters.ok + served - errors, counters.errors + errors

    def _fold_counters(self, revision: str) -> None:
        ok, errors = self._counts(revision)
        self._counters[revision] = _Counters(ok, errors, time.time())

    def _write_logs(self, service: str, revision: str, behaviour: Behaviour) -> None:
        """What a revision that fails writes to Cloud Logging over its next minute."""
        if not self._log_listeners or not (behaviour.error_rate or behaviour.healthz_status >= 500):
            return
        uri = f"{self.base_url}/_svc/{_short(service)}"
        at = datetime.fromtimestamp(self.clock(), UTC)
        for entry in cloud_run_logs(service, revision, uri, behaviour, at):
            for listener in self._log_listeners:
                listener(entry)


FAILED_REQUEST_PATHS = ("/api/checkout", "/api/cart?id=8812", "/api/cart?id=17")
MAX_LOGGED_ERRORS = 12  # per kind and behaviour change: enough to rank, never a flood


def cloud_run_logs(
    service: str, revision: str, uri: str, behaviour: Behaviour, at: datetime
) -> list[dict[str, Any]]:
    """A minute of a failing revision's logs as Cloud Run writes them
    (https://cloud.google.com/run/docs/logging): request logs of failed requests (with
    ``httpRequest.status`` 5xx), plain stderr lines (no severity: Cloud Run cannot know one)
    and structured JSON lines from stdout (their ``severity`` is parsed into the entry)."""
    project, region = service.split("/")[1], service.split("/")[3]
    resource = {
        "type": "cloud_run_revision",
        "labels": {
            "project_id": project,
            "location": region,
            "service_name": _short(service),
            "revision_name": revision,
            "configuration_name": _short(service),
        },
    }
    log = f"projects/{project}/logs/run.googleapis.com%2F"
    failed = min(MAX_LOGGED_ERRORS, max(1, round(behaviour.rps * 60 * behaviour.error_rate)))
    entries: list[dict[str, Any]] = []
    for i in range(failed):
        stamp = (at + timedelta(seconds=i * 60 / failed)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        path = FAILED_REQUEST_PATHS[i % len(FAILED_REQUEST_PATHS)]
        entries.append(
            {
                "logName": log + "requests",
                "resource": resource,
                "timestamp": stamp,
                "severity": "ERROR",
                "httpRequest": {
                    "requestMethod": "GET",
                    "requestUrl": uri + path,
                    "status": 500 if behaviour.error_rate else behaviour.healthz_status,
                    "latency": f"{behaviour.p95_ms / 1000:.3f}s",
                },
            }
        )
        plain = "KeyError: 'slots_v2'" if i % 2 else f"ERROR payment call failed after {3000 + i}ms"
        entries.append(
            {
                "logName": log + "stderr",
                "resource": resource,
                "timestamp": stamp,
                "textPayload": plain,
            }
        )
        entries.append(
            {
                "logName": log + "stdout",
                "resource": resource,
                "timestamp": stamp,
                "severity": "ERROR",
                "jsonPayload": {"message": f"checkout failed for order {8000 + i}: upstream 503"},
            }
        )
    return entries


FLAG_PREFIX = "FEATURE_FLAG_"


def _feature_flags(containers: Any) -> dict[str, str]:
    """``FEATURE_FLAG_*`` of the ingress container (the only one, or the one with a port),
    by name without the prefix."""
    with_port = [c for c in containers if c.ports]
    ingress = containers[0] if len(containers) == 1 else (with_port or [None])[0]
    if ingress is None:
        return {}
    flags = {}
    for var in ingress.env:
        if var.name.startswith(FLAG_PREFIX) and len(var.name) > len(FLAG_PREFIX):
            secret = var.value_source.secret_key_ref.secret if "value_source" in var else ""
            flags[var.name[len(FLAG_PREFIX) :]] = f"secret:{secret}" if secret else var.value
    return flags


def _ingress_image(containers: Any) -> str:
    """The image of the ingress container (the only one, or the one with a port)."""
    with_port = [c for c in containers if c.ports]
    ingress = (with_port or list(containers) or [None])[0]
    return str(ingress.image) if ingress is not None else ""


def _truthy(value: str) -> bool:
    """How the sample app reads a flag variable."""
    return value.strip().lower() in ("true", "1", "on", "yes")


def _prometheus(revision: str, behaviour: Behaviour, ok: float, errors: float) -> str:
    label = f'revision="{revision}"'
    p95_s = behaviour.p95_ms / 1000
    total = round(ok) + round(errors)
    lines = [
        "# HELP http_requests_total HTTP requests served, by status code.",
        "# TYPE http_requests_total counter",
        f'http_requests_total{{{label},code="200"}} {round(ok)}',
        f'http_requests_total{{{label},code="500"}} {round(errors)}',
        "# HELP http_request_duration_seconds Request latency.",
        "# TYPE http_request_duration_seconds summary",
        f'http_request_duration_seconds{{{label},quantile="0.5"}} {p95_s * 0.4:.4f}',
        f'http_request_duration_seconds{{{label},quantile="0.95"}} {p95_s:.4f}',
        f"http_request_duration_seconds_sum{{{label}}} {total * p95_s * 0.5:.3f}",
        f"http_request_duration_seconds_count{{{label}}} {total}",
        "# HELP up Whether the revision is up.",
        "# TYPE up gauge",
        f"up{{{label}}} {0 if behaviour.healthz_status >= 500 else 1}",
    ]
    return "\n".join(lines) + "\n"
