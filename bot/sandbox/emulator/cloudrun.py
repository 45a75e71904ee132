"""Cloud Run Admin API v2 emulator, plus the services' own URLs (/healthz, /metrics).

It speaks the REST dialect of the ``google-cloud-run`` (run_v2) client: every payload is built
from, and parsed into, the library's own message types, so a field the client would not accept
cannot slip through. State lives in ``run_v2.Service`` / ``run_v2.Revision`` messages.

Semantics worth knowing:

- PATCH (update_service) changes the spec (``traffic``, ``template``...) at once, bumps
  ``generation`` and ``etag``, and returns a long-running Operation. ``trafficStatuses``,
  ``observedGeneration``, ``reconciling`` and ``terminalCondition`` change when the operation
  completes, ``operation_delay_s`` seconds later (evaluated lazily on any read).
- A non-empty ``etag`` in the body that differs from the current one is a 409 ABORTED; traffic
  percents that do not sum to 100 are a 400; a REVISION target naming a missing revision is
  accepted, and its operation ends with error code 5 (NOT_FOUND) and the spec left as sent.
- ``updateMask`` is honoured as a FieldMask (AIP-161): ``template`` replaces the whole template,
  ``template.containers,template.revision`` only those sub-fields (the rest of the template is
  kept); a path through a repeated field or to an unknown field is a 400. Without a mask, the
  top-level fields present in the body are applied.
- A template change creates a revision, named ``template.revision`` or generated. The update's
  own traffic may name that revision (e.g. a 0% ``green`` tag on it). The name must start with
  ``{service}-``; if it is taken, the update is refused with 409 ALREADY_EXISTS ("Revision named
  ... with different configuration already exists"), unless the existing revision was created
  from exactly that template (then it is reused, as Cloud Run does). A revision name is a DNS
  label (at most 63 characters, no trailing hyphen) and a tag and the service's name fit 46
  characters together, else 400 with Cloud Run's own message (cloudrun_revisions.py). Every
  container image must look like ``[host/]repo-path[:tag][@digest]`` (no spaces, not
  empty), else 400. Unlike Cloud Run, the registry host is not checked.
- A revision created by an update starts with ``new_revision_behaviour`` (default: healthy);
  set it to make the next deployed revisions bad (failing /healthz, errors, latency).
- Each container image is resolved to a digest when a revision is created (``images``: a tag
  names a digest until ``move_tag`` moves it) and shown in the revision's ``containerStatuses``
  (``imageDigest``: ``repo@sha256:...``), added to the JSON since run_v2 does not model it.
- ``fail_next_operations`` makes the next updates' operations fail (e.g. quota errors).
- A service answers at ``{base_url}/_svc/{service}`` (picking a revision by its actual traffic
  share, smooth weighted round-robin) and each tag at ``{base_url}/_svc/{service}/_tag/{tag}``.
- Exactly ``/healthz`` on a service or tag URL is answered by "Google's front end" with its HTML
  404 (see RESERVED_PATH_NOTE); the container answers ``/health`` and ``/healthz/``. A custom
  domain (``map_domain``) answers at ``{base_url}/_domain/{host}``, where nothing is reserved.
- ``ingress`` internal (or internal and Cloud Load Balancing, ``set_ingress``): its URLs and
  custom domain answer Google's HTML 404 to callers from outside (cloudrun_ingress.py), unless
  ``internal_callers`` (the caller has VPC egress).
- ``require_auth`` makes a service answer 403 unless the request carries an ID token minted by
  ``identity`` whose audience is the service URL.
- ``fail_next_revisions``: the next created revisions never become Ready (Ready condition
  FAILED), nor the latest ready revision; their update's operation fails.
- ``GET /config/flags`` on a service, tag or domain URL is the app's own view of its feature
  flags, ``{"flags": {"NEW_CHECKOUT": true}}``: the answering revision's ``FEATURE_FLAG_*``
  variables (ingress container), ``true/1/on/yes`` read as true. ``set_config_flags`` makes a
  revision answer something else (a stale cache, a failing endpoint) to show a mismatch.
- Several containers need exactly one ingress container (the one with a port), else 400.
- ``etag_error`` ("ABORTED" or "FAILED_PRECONDITION") is how a stale etag is refused.
- A revision made to fail (error rate, failing health) writes Cloud Run's own logs through
  ``add_log_listener``: request logs, plain stderr lines, structured ERROR entries.
- Listeners (``add_listener``) get a ServiceSnapshot, stamped by ``clock``, whenever what a
  service serves changes: seeded (backdated by METRICS_HISTORY_S), traffic settled, behaviour
  set. The Monitoring emulator builds its time series from them.
"""

from __future__ import annotations

import json
import random
import re
import string
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2, json_format

from bot.sandbox.emulator.cloudrun_ingress import GOOGLE_404_HTML, IngressMixin
from bot.sandbox.emulator.cloudrun_revisions import (
    ImageRegistry,
    ImagesMixin,
    check_revision_name,
    check_tag_lengths,
    check_template_metadata,
    container_statuses,
    revision_settings,
    seed_template,
    with_container_statuses,
)
from bot.sandbox.emulator.http import (
    HttpError,
    Request,
    Response,
    Router,
    google_error,
    json_response,
    text_response,
)
from bot.sandbox.emulator.identity import IdentityEmulator

LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
UNSPECIFIED = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED
State = run_v2.Condition.State

# Top-level Service fields a PATCH may change (snake_case); the rest are output-only here.
MUTABLE_FIELDS = frozenset(
    {
        "description",
        "labels",
        "annotations",
        "client",
        "client_version",
        "ingress",
        "launch_stage",
        "binary_authorization",
        "template",
        "traffic",
        "scaling",
        "invoker_iam_disabled",
        "default_uri_disabled",
        "custom_audiences",
    }
)
NOT_FOUND = 5
# A revision without one runs as the project's default compute service account (run_secrets.py).
DEFAULT_SERVICE_ACCOUNT = "100000000001-compute@developer.gserviceaccount.com"
DEFAULT_PAGE_SIZE = 100
HEALTH_PATHS = r"/(?:healthz/|health)"
# What Cloud Run says when a new revision's container does not start (its Ready condition).
REVISION_START_FAILED = (
    "Revision '{revision}' is not ready and cannot serve traffic. The user-provided container "
    "failed to start and listen on the port defined provided by the PORT=8080 environment "
    "variable within the allocated timeout."
)  # the container's own health endpoints

METRICS_HISTORY_S = 600.0  # /metrics counters start with this much synthetic history

_LOCATION = r"projects/[^/]+/locations/[^/]+"
_SERVICE = _LOCATION + r"/services/[^/]+"

# ``[host[:port]/]repo-path[:tag][@digest]``, lower-case path components as Docker requires.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]{32,})?"
)


class NotFound(HttpError, KeyError):
    """An unknown service or revision: a 404 on the HTTP API, a KeyError in Python."""

    def __init__(self, message: str) -> None:
        super().__init__(404, message)

    def __str__(self) -> str:
        return self.message


class AlreadyExists(HttpError):
    """A 409 whose google.rpc status is ALREADY_EXISTS (a bare 409 here reads ABORTED)."""

    def __init__(self, message: str) -> None:
        super().__init__(409, message)

    def response(self) -> Response:
        answer = google_error(409, self.message)
        body = json.loads(answer.body)
        body["error"]["status"] = "ALREADY_EXISTS"
        return json_response(body, 409)


class StatusError(HttpError):
    """An error whose google.rpc status is not the one its HTTP code implies."""

    def __init__(self, status: int, rpc_status: str, message: str) -> None:
        super().__init__(status, message)
        self.rpc_status = rpc_status

    def response(self) -> Response:
        body = json.loads(google_error(self.status, self.message).body)
        body["error"]["status"] = self.rpc_status
        return json_response(body, self.status)


@dataclass
class Behaviour:
    """How a revision's own endpoints answer."""

    healthz_status: int = 200
    error_rate: float = 0.0
    p95_ms: float = 120.0
    rps: float = 20.0


@dataclass(frozen=True)
class ServiceSnapshot:
    """What a service serves from ``at`` (clock seconds) on, sent to listeners on each change.

    ``service`` is the full name; ``shares`` maps revision -> percent actually served;
    ``behaviours`` holds a copy for every revision of the service. ``replaced``: the service
    was (re)created, forget its earlier history. ``service == ""`` with ``replaced``: every
    service was forgotten (reset).
    """

    at: float
    service: str
    shares: dict[str, int]
    behaviours: dict[str, Behaviour]
    replaced: bool = False


SnapshotListener = Callable[[ServiceSnapshot], None]


@dataclass
class _Counters:
    """Request counts folded up to ``since``; they keep growing from there at the behaviour."""

    ok: float = 0.0
    errors: float = 0.0
    since: float = field(default_factory=lambda: time.time() - METRICS_HISTORY_S)


@dataclass
class _Operation:
    name: str
    service: str  # full service name
    generation: int
    done_at: float  # time.monotonic()
    traffic: list[run_v2.TrafficTarget]
    new_revision: str = ""  # full revision name created (or reused) by this update
    error: str = ""  # set when the operation fails
    error_code: int = NOT_FOUND  # google.rpc.Code of that failure
    done: bool = False
    result: run_v2.Service | None = None


class CloudRunEmulator(IngressMixin, ImagesMixin):
    def __init__(
        self, clock: Callable[[], float] = time.time, identity: IdentityEmulator | None = None
    ) -> None:
        self.base_url = "http://127.0.0.1"
        self.identity = identity or IdentityEmulator()
        self.revision_check: Callable[[str, run_v2.RevisionTemplate, str], str] | None = None
        self.clock = clock  # epoch seconds; stamps the snapshots sent to listeners
        self._listeners: list[SnapshotListener] = []
        self._log_listeners: list[Callable[[dict[str, Any]], Any]] = []
        self._lock = threading.RLock()
        self._rng = random.Random()
        self.reset()

    # -- Python API ---------------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.operation_delay_s = 0.0
            self.etag_error = "ABORTED"  # or "FAILED_PRECONDITION": how a stale etag is refused
            self._services: dict[str, run_v2.Service] = {}
            self._revisions: dict[str, run_v2.Revision] = {}  # full name -> revision
            self._behaviours: dict[str, Behaviour] = {}  # short revision name -> behaviour
            # full revision name -> the template it was created from (``revision`` cleared)
            self._templates: dict[str, run_v2.RevisionTemplate] = {}
            self.images = ImageRegistry()  # tags resolve to digests when a revision is made
            # full revision name -> its containerStatuses (name, imageDigest)
            self._container_statuses: dict[str, list[dict[str, str]]] = {}
            self._new_behaviour: dict[str, Any] = {}  # for revisions made by updates
            self._counters: dict[str, _Counters] = {}
            self._operations: dict[str, _Operation] = {}
            self._wrr: dict[str, dict[str, int]] = {}  # service -> revision -> current weight
            self._failures: list[tuple[int, str]] = []  # (code, message) for the next operations
            self._revision_failures: list[tuple[int, str]] = []  # the same, for new revisions
            self._domains: dict[str, str] = {}  # custom domain host -> short service name
            self.internal_callers = False  # True: requests come from the VPC (internal ingress)
            self._auth_required: set[str] = set()  # short names of IAM-protected services
            # short revision name -> what its /config/flags answers instead of its env
            self._config_answers: dict[str, tuple[int, dict[str, bool] | None]] = {}
            for listener in self._listeners:
                listener(ServiceSnapshot(self.clock(), "", {}, {}, replaced=True))

    def seed_service(
        self,
        project: str,
        region: str,
        name: str,
        revisions: list[dict[str, Any]],
        traffic: dict[str, int] | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Create (or replace) a service with its revisions, oldest first; returns its full name.

        ``revisions``: ``{"name", "image", "age_s", "sidecars", "env"}`` each (``sidecars``:
        optional ``[{"name", "image"}]``, put before the ingress container; ``env``: optional
        ``{NAME: value}`` of the ingress container, or ``{NAME: {"secret", "version"}}``;
        ``template``: optional RevisionTemplate fields in JSON, ``{"serviceAccount": ...}``;
        ``resources``: optional, the ingress container's, ``{"cpuIdle": true}``). The service's
        template is the newest revision's.
        ``traffic``: revision -> percent (default: 100% on the newest). ``tags``: tag -> revision
        (0% tagged targets).
        """
        full = f"projects/{project}/locations/{region}/services/{name}"
        with self._lock:
            short_names = [str(spec["name"]) for spec in revisions]
            if not short_names or len(set(short_names)) != len(short_names):
                raise ValueError("a service needs at least one revision, each named once")
            targets = _seed_targets(short_names, traffic or {short_names[-1]: 100}, tags or {})
            self._drop_service(full)
            created = [
                self._seed_revision(full, spec, i, len(revisions))
                for i, spec in enumerate(revisions)
            ]
            self._services[full] = self._seed_service_message(full, created, targets)
            self._emit(full, self.clock() - METRICS_HISTORY_S, replaced=True)
            return full

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

    def complete_revision(self, word: str) -> str:
        """``word`` itself when a revision has that name, else the one revision named
        ``word-xyz`` (so a console line can say ``wa-backend-00004`` for a random suffix)."""
        with self._lock:
            if word in self._behaviours:
                return word
            fits = [name for name in self._behaviours if name.startswith(word + "-")]
            return fits[0] if len(fits) == 1 else word

    def set_ready(self, revision: str, ready: bool, message: str = "") -> None:
        """Set a revision's ``Ready`` condition: True, or False with ``message`` (as Cloud Run
        reports a revision whose container failed to start)."""
        with self._lock:
            full = f"{self._service_of(revision)}/revisions/{revision}"
            state = State.CONDITION_SUCCEEDED if ready else State.CONDITION_FAILED
            condition = _condition(state, self._now(), message if not ready else "")
            self._revisions[full].conditions = [condition]
            self._revisions[full].reconciling = False

    def new_revision_behaviour(self, **changes: Any) -> dict[str, Any]:
        """Set the behaviour every revision created by an update from now on starts with.

        The fields not given keep the healthy defaults; no fields at all restores them (so does
        ``reset``). Seeded revisions are not affected. Returns that whole behaviour.
        """
        converted = _behaviour_changes(changes)
        with self._lock:
            self._new_behaviour = converted
            return asdict(Behaviour(**converted))

    def add_log_listener(self, listener: Callable[[dict[str, Any]], Any]) -> None:
        """Call ``listener`` with each log entry Cloud Run itself would write (REST LogEntry)."""
        with self._lock:
            self._log_listeners.append(listener)

    def add_listener(self, listener: SnapshotListener) -> None:
        """Call ``listener`` (under this emulator's lock) whenever what a service serves changes."""
        with self._lock:
            self._listeners.append(listener)

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

    def settle(self) -> None:
        """Complete the operations that are due (reads do this anyway)."""
        with self._lock:
            self._settle()

    def fail_next_operations(self, message: str, times: int = 1, code: int = 9) -> None:
        """Make the next ``times`` accepted updates end in a failed operation.

        The PATCH itself succeeds (spec and etag change); the operation then completes with
        ``error.code`` = ``code`` (a google.rpc.Code, default 9 FAILED_PRECONDITION) and the
        traffic actually served stays as it was.
        """
        with self._lock:
            self._failures.extend([(int(code), message)] * max(0, times))

    def fail_next_revisions(self, message: str = REVISION_START_FAILED, times: int = 1) -> None:
        """Make the next ``times`` revisions created by an update fail to start.

        As on Cloud Run, the revision is created but never Ready (its Ready condition is
        FAILED with ``message``), it does not become the latest ready revision, the update's
        operation fails (code 9) and the traffic actually served does not change.
        ``{revision}`` in the message is replaced by the revision's name.
        """
        with self._lock:
            self._revision_failures.extend([(9, message)] * max(0, times))

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

    def revision(self, revision: str) -> run_v2.Revision:
        """A copy of a revision as the API shows it (its settings, containers, conditions)."""
        with self._lock:
            self._settle()
            return run_v2.Revision(
                self._revisions[f"{self._service_of(revision)}/revisions/{revision}"]
            )

    def location_of(self, service: str) -> tuple[str, str]:
        """(project, region) of the service named ``service``; KeyError when there is none."""
        with self._lock:
            parts = self._find_by_short(service).name.split("/")
            return parts[1], parts[3]

    def behaviour(self, revision: str) -> dict[str, Any]:
        with self._lock:
            return asdict(self._require_behaviour(revision))

    def traffic(self, service_name: str) -> list[dict[str, Any]]:
        """What the service actually serves (its ``trafficStatuses``)."""
        with self._lock:
            self._settle()
            service = self._find_by_short(service_name)
            return [
                {"revision": s.revision, "percent": s.percent, "tag": s.tag}
                for s in service.traffic_statuses
            ]

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

    # -- routes -------------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        add = router.add
        add("GET", rf"/v2/(?P<name>{_SERVICE})", "run.services.get", self._get_service)
        add("PATCH", rf"/v2/(?P<name>{_SERVICE})", "run.services.patch", self._patch_service)
        add(
            "GET",
            rf"/v2/(?P<parent>{_LOCATION})/services",
            "run.services.list",
            self._list_services,
        )
        add(
            "GET",
            rf"/v2/(?P<name>{_SERVICE}/revisions/[^/]+)",
            "run.revisions.get",
            self._get_revision,
        )
        add(
            "GET",
            rf"/v2/(?P<parent>{_SERVICE})/revisions",
            "run.revisions.list",
            self._list_revisions,
        )
        add(
            "GET",
            rf"/v2/(?P<name>{_LOCATION}/operations/[^/]+)",
            "run.operations.get",
            self._get_operation,
        )
        own = r"/_svc/(?P<service>[^/]+)(?:/_tag/(?P<tag>[^/]+))?"
        # Google's front end answers exactly ``/healthz`` on *.run.app URLs itself (see
        # RESERVED_PATH_NOTE); ``/healthz/`` and ``/health`` reach the container.
        add("GET", own + "/healthz", "service.frontend", self._front_end_404, _plain_error)
        add("GET", own + HEALTH_PATHS, "service.healthz", self._healthz, _plain_error)
        add("GET", own + "/metrics", "service.metrics", self._metrics, _plain_error)
        flags = "/config/flags"
        add("GET", own + flags, "service.config_flags", self._config_flags, _plain_error)
        domain = r"/_domain/(?P<host>[^/]+)"  # a custom domain: nothing is reserved there
        health = domain + r"/(?:healthz/?|health)"
        add("GET", health, "service.healthz", self._healthz, _plain_error)
        add("GET", domain + "/metrics", "service.metrics", self._metrics, _plain_error)
        add("GET", domain + flags, "service.config_flags", self._config_flags, _plain_error)
        self._register_control(router)

    def _register_control(self, router: Router) -> None:
        add = router.add
        add("POST", "/_emulator/services", "_emulator.cloudrun.seed", self._control_seed)
        add(
            "GET",
            r"/_emulator/services/(?P<service>[^/]+)/traffic",
            "_emulator.cloudrun.traffic",
            self._control_traffic,
        )
        behaviour = r"/_emulator/revisions/(?P<revision>[^/]+)/behaviour"
        add("POST", behaviour, "_emulator.cloudrun.behaviour.set", self._control_set_behaviour)
        add("GET", behaviour, "_emulator.cloudrun.behaviour.get", self._control_get_behaviour)
        ready = r"/_emulator/revisions/(?P<revision>[^/]+)/ready"
        add("POST", ready, "_emulator.cloudrun.ready.set", self._control_set_ready)
        add("POST", "/_emulator/config", "_emulator.cloudrun.config", self._control_config)
        add("POST", "/_emulator/domains", "_emulator.cloudrun.domains", self._control_domain)
        add("POST", "/_emulator/images", "_emulator.cloudrun.images", self._control_images)
        add(
            "POST",
            r"/_emulator/services/(?P<service>[^/]+)/ingress",
            "_emulator.cloudrun.ingress",
            self._control_ingress,
        )
        add(
            "POST",
            r"/_emulator/services/(?P<service>[^/]+)/auth",
            "_emulator.cloudrun.auth",
            self._control_auth,
        )
        add(
            "POST",
            r"/_emulator/revisions/(?P<revision>[^/]+)/config-flags",
            "_emulator.cloudrun.config_flags",
            self._control_config_flags,
        )
        add(
            "POST",
            "/_emulator/revisions/fail",
            "_emulator.cloudrun.fail_revisions",
            self._control_fail_revisions,
        )
        add(
            "POST",
            "/_emulator/operations/fail",
            "_emulator.cloudrun.fail_operations",
            self._control_fail_operations,
        )

    # -- Admin API handlers -------------------------------------------------------------------

    def _get_service(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            service = self._require_service(request.params["name"])
            return _message_response(self._render(service), request)

    def _list_services(self, request: Request) -> Response:
        prefix = request.params["parent"] + "/services/"
        with self._lock:
            self._settle()
            names = sorted(n for n in self._services if n.startswith(prefix))
            page, token = _page(names, request)
            body = run_v2.ListServicesResponse(
                services=[self._render(self._services[n]) for n in page], next_page_token=token
            )
            return _message_response(body, request)

    def _get_revision(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            revision = self._revisions.get(request.params["name"])
            if revision is None:
                raise HttpError(404, f"Revision '{request.params['name']}' was not found.")
            answer = _message_response(revision, request)
            answer.body = with_container_statuses(answer.body, self._container_statuses)
            return answer

    def _list_revisions(self, request: Request) -> Response:
        parent = request.params["parent"]
        with self._lock:
            self._settle()
            self._require_service(parent)
            owned = [r for r in self._revisions.values() if r.name.startswith(parent + "/")]
            owned.sort(key=lambda r: r.create_time, reverse=True)
            page, token = _page(owned, request)
            body = run_v2.ListRevisionsResponse(revisions=page, next_page_token=token)
            answer = _message_response(body, request)
            answer.body = with_container_statuses(answer.body, self._container_statuses)
            return answer

    def _get_operation(self, request: Request) -> Response:
        with self._lock:
            self._settle()
            operation = self._operations.get(request.params["name"])
            if operation is None:
                raise HttpError(404, f"Operation '{request.params['name']}' was not found.")
            return self._operation_response(operation, request)

    def _patch_service(self, request: Request) -> Response:
        name = request.params["name"]
        with self._lock:
            self._settle()
            current = self._require_service(name)
            try:
                updated, new_revision, error = self._prepare_update(current, request)
            except (AlreadyExists, StatusError) as conflict:
                return conflict.response()
            if request.arg("validateOnly") == "true":
                preview = _Operation(
                    f"{_location(name)}/operations/{uuid.uuid4()}",
                    name,
                    current.generation,
                    0.0,
                    [],
                    done=True,
                    result=current,
                )
                return self._operation_response(preview, request)
            operation = self._commit(current, updated, new_revision, error)
            return self._operation_response(operation, request)

    # -- update machinery ---------------------------------------------------------------------

    def _prepare_update(
        self, current: run_v2.Service, request: Request
    ) -> tuple[run_v2.Service, str, str]:
        """The updated service, the revision it creates ("" if none) and its error ("" if none).

        Raises HttpError for what the API refuses outright (bad body, mask, etag, split, image
        or revision name).
        """
        patch, keys = _parse_service_body(request.body, current.name)
        paths = _mask_paths(request.arg("updateMask"), keys)
        if patch.etag and patch.etag != current.etag:
            # AIP-154 now says ABORTED (409); older Google APIs answer FAILED_PRECONDITION,
            # which maps to HTTP 400 (aip-dev/google.aip.dev#705). Either can be configured.
            message = f"etag mismatch: the service is at etag {current.etag}"
            if self.etag_error == "FAILED_PRECONDITION":
                raise StatusError(400, "FAILED_PRECONDITION", message)
            raise HttpError(409, message)
        updated = run_v2.Service(current)
        field_mask_pb2.FieldMask(paths=paths).MergeMessage(
            run_v2.Service.pb(patch),
            run_v2.Service.pb(updated),
            replace_message_field=True,
            replace_repeated_field=True,
        )
        changed = {p.split(".")[0] for p in paths}
        if "traffic" in changed:
            _validate_traffic(updated.traffic)
            check_tag_lengths(_short(current.name), updated.traffic)
        new_revision = self._new_revision_name(current, updated, changed)
        return (
            updated,
            new_revision,
            self._missing_revision_error(current.name, updated.traffic, new_revision),
        )

    def _new_revision_name(
        self, current: run_v2.Service, updated: run_v2.Service, changed: set[str]
    ) -> str:
        """The revision (full name) this update creates or reuses; "" if the template is kept.

        A template naming an existing revision made from exactly that template reuses it (it
        becomes the latest again, as in Knative); another revision of that name is a 409.
        """
        if "template" not in changed or updated.template == current.template:
            return ""
        _validate_template(updated.template)
        check_template_metadata(updated.template)
        short_service = _short(current.name)
        short = updated.template.revision or self._fresh_revision_name(current)
        check_revision_name(short)
        if not short.startswith(short_service + "-"):
            raise HttpError(400, f"revision name must start with '{short_service}-'")
        full = f"{current.name}/revisions/{short}"
        if full in self._revisions and self._templates.get(full) != _config_of(updated.template):
            raise AlreadyExists(
                f"Revision named '{short}' with different configuration already exists."
            )
        return full

    def _fresh_revision_name(self, current: run_v2.Service) -> str:
        """``{service}-{generation:05d}-{3 random letters}``, not yet taken."""
        while True:
            suffix = "".join(self._rng.choices(string.ascii_lowercase, k=3))
            short = f"{_short(current.name)}-{current.generation + 1:05d}-{suffix}"
            if f"{current.name}/revisions/{short}" not in self._revisions:
                return short

    def _missing_revision_error(
        self, service: str, traffic: Sequence[run_v2.TrafficTarget], new_revision: str
    ) -> str:
        known = {_short(n) for n in self._revisions if n.startswith(service + "/")}
        known |= {_short(new_revision)} if new_revision else set()
        for target in traffic:
            if target.type_ == REVISION and target.revision not in known:
                return f"Revision named '{target.revision}' referenced in traffic does not exist."
        return ""

    def _commit(
        self, current: run_v2.Service, updated: run_v2.Service, new_revision: str, error: str
    ) -> _Operation:
        now = self._now()
        updated.generation = current.generation + 1
        updated.etag = _etag()
        updated.update_time = now
        updated.last_modifier = "runback-sandbox@example.com"
        updated.reconciling = True
        updated.terminal_condition = _condition(State.CONDITION_RECONCILING, now)
        if new_revision:
            if new_revision not in self._revisions:  # else an identical one is reused
                self._add_revision(
                    new_revision,
                    updated.template,
                    now,
                    ready=False,
                    behaviour=Behaviour(**self._new_behaviour),
                )
            updated.latest_created_revision = new_revision
        self._services[current.name] = updated
        code = NOT_FOUND
        if not error and self._failures:
            code, error = self._failures.pop(0)
        if not error and new_revision and self._revision_failures:
            code, error = self._revision_failures.pop(0)
            error = error.format(revision=_short(new_revision))
        if not error and new_revision and self.revision_check is not None:
            denied = self.revision_check(current.name, updated.template, _short(new_revision))
            code, error = (13, denied) if denied else (code, error)  # see run_secrets.py
        operation = _Operation(
            name=f"{_location(current.name)}/operations/{uuid.uuid4()}",
            service=current.name,
            generation=updated.generation,
            done_at=time.monotonic() + self.operation_delay_s,
            traffic=[run_v2.TrafficTarget(t) for t in updated.traffic],
            new_revision=new_revision,
            error=error,
            error_code=code,
        )
        self._operations[operation.name] = operation
        self._settle()
        return operation

    def _settle(self) -> None:
        """Complete every operation whose time has come (lazy reconciliation)."""
        now = time.monotonic()
        due = [o for o in self._operations.values() if not o.done and o.done_at <= now]
        for operation in sorted(due, key=lambda o: (o.done_at, o.generation)):
            self._complete(operation)

    def _complete(self, operation: _Operation) -> None:
        service = self._services[operation.service]
        now = self._now()
        if operation.new_revision:
            revision = self._revisions[operation.new_revision]
            if operation.error and revision.reconciling:
                # the revision never became Ready, so it is not the latest ready one either
                revision.reconciling = False
                revision.conditions = [_condition(State.CONDITION_FAILED, now, operation.error)]
            elif revision.reconciling:
                _mark_ready(revision, now)
            if not operation.error:
                service.latest_ready_revision = operation.new_revision
        if operation.generation >= service.observed_generation:
            service.observed_generation = operation.generation
            if operation.error:
                service.terminal_condition = _condition(
                    State.CONDITION_FAILED, now, operation.error
                )
                if (
                    operation.new_revision
                    and revision.conditions[0].state == State.CONDITION_FAILED
                ):
                    # the service's terminalCondition names why (Condition.CommonReason)
                    service.terminal_condition.reason = (
                        run_v2.Condition.CommonReason.REVISION_FAILED
                    )
            else:
                latest = _short(service.latest_ready_revision)
                service.traffic_statuses = _statuses(operation.traffic, latest)
                service.terminal_condition = _condition(State.CONDITION_SUCCEEDED, now)
                self._wrr.pop(service.name, None)
            service.reconciling = any(
                not o.done and o.service == service.name and o.generation > operation.generation
                for o in self._operations.values()
            )
        operation.done = True
        operation.result = run_v2.Service(service)
        self._emit(service.name)

    def _operation_response(self, operation: _Operation, request: Request) -> Response:
        message = operations_pb2.Operation(name=operation.name, done=operation.done)
        current = self._services.get(operation.service, operation.result)
        if current is not None:
            message.metadata.Pack(run_v2.Service.pb(self._render(current)))
        if operation.done and operation.error:
            message.error.code = operation.error_code
            message.error.message = operation.error
        elif operation.done and operation.result is not None:
            message.response.Pack(run_v2.Service.pb(self._render(operation.result)))
        body = json_format.MessageToJson(
            message, use_integers_for_enums=_int_enums(request), indent=None
        )
        return Response(200, body.encode())

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

    # -- control API handlers -----------------------------------------------------------------

    def _control_seed(self, request: Request) -> Response:
        body = _json_object(request)
        try:
            name = self.seed_service(
                str(body["project"]),
                str(body["region"]),
                str(body["name"]),
                list(body["revisions"]),
                body.get("traffic"),
                body.get("tags"),
            )
        except KeyError as error:
            raise HttpError(400, f"missing field {error}") from error
        except (TypeError, ValueError) as error:
            raise HttpError(400, str(error)) from error
        return json_response({"name": name, "traffic": self.traffic(str(body["name"]))})

    def _control_domain(self, request: Request) -> Response:
        """``{"host": "api.example.com", "service": "wa-backend"}``: a domain mapping."""
        body = _json_object(request)
        try:
            url = self.map_domain(str(body["host"]), str(body["service"]))
        except KeyError as error:
            raise HttpError(400, f"missing field {error}") from error
        return json_response({"url": url})

    def _control_auth(self, request: Request) -> Response:
        """``{"required": true}``: the service answers 403 without an ID token for its URL."""
        required = bool(_json_object(request).get("required", True))
        self.require_auth(request.params["service"], required)
        return json_response({"service": request.params["service"], "required": required})

    def _control_traffic(self, request: Request) -> Response:
        return json_response(self.traffic(request.params["service"]))

    def _control_set_behaviour(self, request: Request) -> Response:
        body = _json_object(request)
        try:
            return json_response(self.set_behaviour(request.params["revision"], **body))
        except (TypeError, ValueError) as error:
            raise HttpError(400, str(error)) from error

    def _control_set_ready(self, request: Request) -> Response:
        body = _json_object(request)
        if not isinstance(body.get("ready"), bool):
            raise HttpError(400, "ready must be true or false")
        self.set_ready(request.params["revision"], body["ready"], str(body.get("message", "")))
        return json_response({"revision": request.params["revision"], "ready": body["ready"]})

    def _control_get_behaviour(self, request: Request) -> Response:
        return json_response(self.behaviour(request.params["revision"]))

    def _control_fail_revisions(self, request: Request) -> Response:
        """``{"times": N, "message": "..."}`` (both optional): new revisions fail to start."""
        body = _json_object(request)
        try:
            times = int(body.get("times", 1))
        except (TypeError, ValueError) as error:
            raise HttpError(400, "times must be an integer") from error
        self.fail_next_revisions(str(body.get("message") or REVISION_START_FAILED), times)
        return json_response({"pending_revision_failures": len(self._revision_failures)})

    def _control_config_flags(self, request: Request) -> Response:
        """``{"flags": {"NAME": true}, "status": 200}`` (both optional): what the revision's
        ``/config/flags`` answers instead of its environment; ``{}`` restores it."""
        body = _json_object(request)
        flags = body.get("flags")
        if flags is not None and (
            not isinstance(flags, dict) or not all(isinstance(v, bool) for v in flags.values())
        ):
            raise HttpError(400, "flags must be an object of booleans")
        try:
            status = int(body.get("status", 200))
        except (TypeError, ValueError) as error:
            raise HttpError(400, "status must be an integer") from error
        self.set_config_flags(request.params["revision"], flags, status)
        return json_response({"revision": request.params["revision"], "status": status})

    def _control_fail_operations(self, request: Request) -> Response:
        body = _json_object(request)
        try:
            self.fail_next_operations(
                str(body["message"]), int(body.get("times", 1)), int(body.get("code", 9))
            )
        except KeyError as error:
            raise HttpError(400, "missing field 'message'") from error
        except (TypeError, ValueError) as error:
            raise HttpError(400, "times and code must be integers") from error
        return json_response({"pending_failures": len(self._failures)})

    def _control_config(self, request: Request) -> Response:
        """``{"operation_delay_ms": N, "new_revision_behaviour": {...} | null}``, both optional."""
        body = _json_object(request)
        delay_s = self.operation_delay_s
        if "operation_delay_ms" in body:
            try:
                delay_s = max(0.0, float(body["operation_delay_ms"])) / 1000
            except (TypeError, ValueError) as error:
                raise HttpError(400, "operation_delay_ms must be a number") from error
        if "new_revision_behaviour" in body:
            wanted = body["new_revision_behaviour"] or {}
            if not isinstance(wanted, dict):
                raise HttpError(400, "new_revision_behaviour must be an object or null")
            try:
                self.new_revision_behaviour(**wanted)
            except (TypeError, ValueError) as error:
                raise HttpError(400, str(error)) from error
        if "etag_error" in body:
            if body["etag_error"] not in ("ABORTED", "FAILED_PRECONDITION"):
                raise HttpError(400, "etag_error is ABORTED or FAILED_PRECONDITION")
            self.etag_error = body["etag_error"]
        self.operation_delay_s = delay_s
        with self._lock:
            behaviour = asdict(Behaviour(**self._new_behaviour))
        return json_response(
            {
                "operation_delay_ms": self.operation_delay_s * 1000,
                "new_revision_behaviour": behaviour,
                "etag_error": self.etag_error,
            }
        )

    # -- state helpers ------------------------------------------------------------------------

    def _write_logs(self, service: str, revision: str, behaviour: Behaviour) -> None:
        """What a revision that fails writes to Cloud Logging over its next minute."""
        if not self._log_listeners or not (behaviour.error_rate or behaviour.healthz_status >= 500):
            return
        uri = f"{self.base_url}/_svc/{_short(service)}"
        at = datetime.fromtimestamp(self.clock(), UTC)
        for entry in cloud_run_logs(service, revision, uri, behaviour, at):
            for listener in self._log_listeners:
                listener(entry)

    def _now(self) -> datetime:
        """The emulator's time (the sandbox's clock), for every timestamp it writes."""
        return datetime.fromtimestamp(self.clock(), UTC)

    def _require_service(self, name: str) -> run_v2.Service:
        service = self._services.get(name)
        if service is None:
            raise NotFound(f"Resource '{name}' was not found")
        return service

    def _find_by_short(self, short: str) -> run_v2.Service:
        for name, service in self._services.items():
            if _short(name) == short:
                return service
        raise NotFound(f"no service named '{short}'")

    def _require_behaviour(self, revision: str) -> Behaviour:
        behaviour = self._behaviours.get(revision)
        if behaviour is None:
            raise NotFound(f"no revision named '{revision}'")
        return behaviour

    def _service_of(self, revision: str) -> str:
        for name in self._revisions:
            if _short(name) == revision:
                return name.split("/revisions/")[0]
        raise NotFound(f"no revision named '{revision}'")

    def _emit(self, service: str, at: float | None = None, replaced: bool = False) -> None:
        if not self._listeners:
            return
        shares: dict[str, int] = {}
        for status in self._services[service].traffic_statuses:
            if status.percent:
                shares[status.revision] = shares.get(status.revision, 0) + status.percent
        behaviours = {
            _short(name): Behaviour(**asdict(self._behaviours[_short(name)]))
            for name in self._revisions
            if name.startswith(service + "/revisions/")
        }
        stamp = self.clock() if at is None else at
        snapshot = ServiceSnapshot(stamp, service, shares, behaviours, replaced)
        for listener in self._listeners:
            listener(snapshot)

    def _drop_service(self, full: str) -> None:
        self._services.pop(full, None)
        self._wrr.pop(full, None)
        for name in [n for n in self._revisions if n.startswith(full + "/")]:
            del self._revisions[name]
            self._templates.pop(name, None)
            self._container_statuses.pop(name, None)
            self._behaviours.pop(_short(name), None)
            self._counters.pop(_short(name), None)
        for name in [n for n, o in self._operations.items() if o.service == full]:
            del self._operations[name]

    def _add_revision(
        self,
        full: str,
        template: run_v2.RevisionTemplate,
        created: datetime,
        ready: bool,
        behaviour: Behaviour | None = None,
    ) -> None:
        short = _short(full)
        service = full.split("/revisions/")[0]
        self._templates[full] = _config_of(template)
        self._container_statuses[full] = container_statuses(template.containers, self.images)
        settings = revision_settings(template, service)
        settings["service_account"] = template.service_account or DEFAULT_SERVICE_ACCOUNT
        self._revisions[full] = run_v2.Revision(
            name=full,
            uid=str(uuid.uuid4()),
            generation=1,
            create_time=created,
            update_time=created,
            service=_short(service),
            **settings,  # the whole template, as Cloud Run keeps it
            conditions=[
                _condition(
                    State.CONDITION_SUCCEEDED if ready else State.CONDITION_RECONCILING, created
                )
            ],
            reconciling=not ready,
            observed_generation=1,
            etag=_etag(),
        )
        self._behaviours[short] = behaviour or Behaviour()
        self._counters[short] = _Counters()

    def _seed_revision(
        self, service: str, spec: dict[str, Any], index: int, count: int
    ) -> run_v2.Revision:
        full = f"{service}/revisions/{spec['name']}"
        age_s = float(spec.get("age_s", (count - index) * 3600))
        template = seed_template(_seed_containers(spec), spec)
        self._add_revision(full, template, self._now() - timedelta(seconds=age_s), ready=True)
        return self._revisions[full]

    def _seed_service_message(
        self, full: str, revisions: list[run_v2.Revision], targets: list[run_v2.TrafficTarget]
    ) -> run_v2.Service:
        newest = revisions[-1]
        ready = _condition(State.CONDITION_SUCCEEDED, newest.create_time)
        return run_v2.Service(
            name=full,
            uid=str(uuid.uuid4()),
            generation=1,
            observed_generation=1,
            create_time=revisions[0].create_time,
            update_time=newest.create_time,
            creator="runback-sandbox@example.com",
            last_modifier="runback-sandbox@example.com",
            ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
            template=run_v2.RevisionTemplate(self._templates[newest.name]),
            traffic=targets,
            traffic_statuses=_statuses(targets, _short(newest.name)),
            latest_ready_revision=newest.name,
            latest_created_revision=newest.name,
            terminal_condition=ready,
            conditions=[
                _condition(State.CONDITION_SUCCEEDED, newest.create_time, type_="RoutesReady")
            ],
            etag=_etag(),
        )

    def _render(self, service: run_v2.Service) -> run_v2.Service:
        """A copy with the URLs filled in from the current ``base_url``."""
        copy = run_v2.Service(service)
        copy.uri = f"{self.base_url}/_svc/{_short(service.name)}"
        copy.urls = [copy.uri]
        for status in copy.traffic_statuses:
            if status.tag:
                status.uri = f"{copy.uri}/_tag/{status.tag}"
        return copy


# -- module helpers ---------------------------------------------------------------------------


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _location(name: str) -> str:
    return "/".join(name.split("/")[:4])


def _etag() -> str:
    return uuid.uuid4().hex[:16]


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _int_enums(request: Request) -> bool:
    return "enum-encoding=int" in request.arg("$alt")


def _message_response(message: Any, request: Request) -> Response:
    body = type(message).to_json(
        message,
        use_integers_for_enums=_int_enums(request),
        always_print_fields_with_no_presence=False,
        indent=None,
    )
    return Response(200, body.encode())


def _plain_error(status: int, message: str) -> Response:
    return text_response(message + "\n", status)


def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError as error:
        raise HttpError(400, "body is not JSON") from error
    if not isinstance(body, dict):
        raise HttpError(400, "body must be a JSON object")
    return body


def _behaviour_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``Behaviour`` (an int ``healthz_status``, the rest floats)."""
    allowed = {f.name for f in fields(Behaviour)}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValueError(f"unknown behaviour field(s) {unknown}; known: {sorted(allowed)}")
    converted = {
        key: int(value) if key == "healthz_status" else float(value)
        for key, value in changes.items()
    }
    if not 0.0 <= converted.get("error_rate", 0.0) <= 1.0:
        raise ValueError("error_rate is a fraction between 0 and 1")
    if any(converted.get(key, 0) < 0 for key in ("p95_ms", "rps")):
        raise ValueError("p95_ms and rps cannot be negative")
    return converted


def _page(items: list[Any], request: Request) -> tuple[list[Any], str]:
    try:
        start = int(request.arg("pageToken") or 0)
        size = int(request.arg("pageSize") or 0) or DEFAULT_PAGE_SIZE
    except ValueError as error:
        raise HttpError(400, "invalid pageToken or pageSize") from error
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


def _parse_service_body(body: bytes, name: str) -> tuple[run_v2.Service, set[str]]:
    """The PATCH body as a Service (strictly parsed) and the top-level fields it sets."""
    try:
        raw = json.loads(body or b"{}")
    except ValueError as error:
        raise HttpError(400, "Invalid JSON payload received.") from error
    if not isinstance(raw, dict):
        raise HttpError(400, "Invalid JSON payload received: expected an object.")
    try:
        service = run_v2.Service.from_json(json.dumps(raw), ignore_unknown_fields=False)
    except json_format.ParseError as error:
        raise HttpError(400, f"Invalid JSON payload received. {error}") from error
    if service.name and service.name != name:
        raise HttpError(400, f"service.name {service.name} does not match the URL")
    return service, {_snake(key) for key in raw}


def _mask_paths(update_mask: str, body_fields: set[str]) -> list[str]:
    """The FieldMask paths to apply (snake_case); without a mask, the top-level body fields."""
    if not update_mask:
        return sorted(body_fields & MUTABLE_FIELDS)
    paths = [
        ".".join(_snake(part) for part in p.strip().split("."))
        for p in update_mask.split(",")
        if p.strip()
    ]
    bad = sorted(p for p in paths if not _valid_mask_path(p))
    if bad:
        raise HttpError(400, f"Invalid update mask path(s): {', '.join(bad)}")
    return paths


def _valid_mask_path(path: str) -> bool:
    """A mutable top-level field, then singular message fields down to any last field."""
    parts = path.split(".")
    if parts[0] not in MUTABLE_FIELDS:
        return False
    descriptor = run_v2.Service.meta.pb.DESCRIPTOR
    for i, part in enumerate(parts):
        field_ = descriptor.fields_by_name.get(part)
        if field_ is None:
            return False
        if i < len(parts) - 1:
            if field_.message_type is None or _is_repeated(field_):
                return False
            descriptor = field_.message_type
    return True


def _is_repeated(field_: Any) -> bool:
    if hasattr(field_, "is_repeated"):  # protobuf >= 5.28 (``label`` is gone from upb's)
        return bool(field_.is_repeated)
    return bool(field_.label == field_.LABEL_REPEATED)


def _config_of(template: run_v2.RevisionTemplate) -> run_v2.RevisionTemplate:
    """A revision's configuration: its template without the name."""
    config = run_v2.RevisionTemplate(template)
    config.revision = ""
    return config


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


def _seed_containers(spec: dict[str, Any]) -> list[run_v2.Container]:
    """One container, or (with ``sidecars``) the sidecars first and the ingress container, the
    only one with a port, last: so ``containers[0]`` is not the one a deploy must change."""
    image = str(spec.get("image", ""))
    env = [_seed_env_var(name, value) for name, value in dict(spec.get("env") or {}).items()]
    sidecars = list(spec.get("sidecars") or [])
    if not sidecars:
        return [run_v2.Container(image=image, env=env)]
    containers = [
        run_v2.Container(name=str(sidecar["name"]), image=str(sidecar["image"]))
        for sidecar in sidecars
    ]
    port = run_v2.ContainerPort(name="http1", container_port=8080)
    return [*containers, run_v2.Container(name="app", image=image, ports=[port], env=env)]


def _seed_env_var(name: str, value: Any) -> run_v2.EnvVar:
    if isinstance(value, dict):
        ref = run_v2.SecretKeySelector(
            secret=str(value["secret"]), version=str(value.get("version", "latest"))
        )
        return run_v2.EnvVar(name=name, value_source=run_v2.EnvVarSource(secret_key_ref=ref))
    return run_v2.EnvVar(name=name, value=str(value))


def _validate_template(template: run_v2.RevisionTemplate) -> None:
    """What Cloud Run refuses in a new template: no container, an image that is no image, or
    several containers without exactly one ingress container (the one with a port)."""
    if not template.containers:
        raise HttpError(400, "template.containers: at least one container is required.")
    with_port = [c for c in template.containers if c.ports]
    if len(template.containers) > 1 and len(with_port) != 1:
        raise HttpError(
            400, "template.containers: exactly one container must specify a port (ingress)."
        )
    for i, container in enumerate(template.containers):
        if not _IMAGE.fullmatch(container.image):
            raise HttpError(
                400,
                f"template.containers[{i}].image: Expected an image path like "
                f"[host/]repo-path[:tag and/or @digest] but obtained '{container.image}'.",
            )


def _validate_traffic(traffic: Sequence[run_v2.TrafficTarget]) -> None:
    tags: set[str] = set()
    for target in traffic:
        if target.type_ == UNSPECIFIED:
            target.type_ = REVISION if target.revision else LATEST
        if target.type_ == REVISION and not target.revision:
            raise HttpError(400, "a TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION target needs a name")
        if target.type_ == LATEST and target.revision:
            raise HttpError(400, "a TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST target has no revision")
        if not 0 <= target.percent <= 100:
            raise HttpError(400, f"traffic percent {target.percent} is out of range")
        if target.tag:
            if target.tag in tags:
                raise HttpError(400, f"traffic tag '{target.tag}' is used twice")
            tags.add(target.tag)
    total = sum(t.percent for t in traffic)
    if total != 100:
        raise HttpError(400, f"Traffic percentages must sum to 100, got {total}.")


def _statuses(
    targets: list[run_v2.TrafficTarget], latest_ready: str
) -> list[run_v2.TrafficTargetStatus]:
    return [
        run_v2.TrafficTargetStatus(
            type_=t.type_,
            revision=latest_ready if t.type_ == LATEST else t.revision,
            percent=t.percent,
            tag=t.tag,
        )
        for t in targets
    ]


def _seed_targets(
    revisions: list[str], traffic: dict[str, int], tags: dict[str, str]
) -> list[run_v2.TrafficTarget]:
    unknown = sorted((set(traffic) | set(tags.values())) - set(revisions))
    if unknown:
        raise ValueError(f"traffic names unknown revision(s) {unknown}")
    if sum(int(p) for p in traffic.values()) != 100:
        raise ValueError("traffic percents must sum to 100")
    targets = {
        rev: run_v2.TrafficTarget(type_=REVISION, revision=rev, percent=int(pct))
        for rev, pct in traffic.items()
        if int(pct) > 0
    }
    extra = []
    for tag, rev in tags.items():
        if rev in targets and not targets[rev].tag:
            targets[rev].tag = tag
        else:
            extra.append(run_v2.TrafficTarget(type_=REVISION, revision=rev, percent=0, tag=tag))
    return [*targets.values(), *extra]


def _condition(
    state: run_v2.Condition.State, at: datetime, message: str = "", type_: str = "Ready"
) -> run_v2.Condition:
    severity = run_v2.Condition.Severity.ERROR if state == State.CONDITION_FAILED else None
    condition = run_v2.Condition(type_=type_, state=state, message=message, last_transition_time=at)
    if severity is not None:
        condition.severity = severity
    return condition


def _mark_ready(revision: run_v2.Revision, at: datetime) -> None:
    revision.reconciling = False
    revision.conditions = [_condition(State.CONDITION_SUCCEEDED, at)]


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
