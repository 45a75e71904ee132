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

The emulator is built in layers, one concern a module: ``cloudrun_model`` (constants, errors,
shared dataclasses), ``cloudrun_checks`` (what a request may not say), ``cloudrun_store``
(services, revisions, seeding), ``cloudrun_operations`` (updates and their long-running
operations), ``cloudrun_serving`` (the services' own URLs, behaviours, IAM, logs),
``cloudrun_control`` (the control API) and this module (the Admin API's routes); beside them
``cloudrun_revisions`` (templates, images) and ``cloudrun_ingress`` (Google's front end).
"""

from __future__ import annotations

from google.cloud import run_v2

from bot.sandbox.emulator.cloudrun_control import CloudRunControl
from bot.sandbox.emulator.cloudrun_model import (
    DEFAULT_SERVICE_ACCOUNT,
    METRICS_HISTORY_S,
    REVISION_START_FAILED,
    AlreadyExists,
    Behaviour,
    NotFound,
    ServiceSnapshot,
    SnapshotListener,
    StatusError,
    _message_response,
    _page,
    _plain_error,
)
from bot.sandbox.emulator.cloudrun_revisions import with_container_statuses
from bot.sandbox.emulator.cloudrun_serving import cloud_run_logs
from bot.sandbox.emulator.http import HttpError, Request, Response, Router

__all__ = [
    "DEFAULT_SERVICE_ACCOUNT",
    "METRICS_HISTORY_S",
    "REVISION_START_FAILED",
    "AlreadyExists",
    "Behaviour",
    "CloudRunEmulator",
    "NotFound",
    "ServiceSnapshot",
    "SnapshotListener",
    "StatusError",
    "cloud_run_logs",
]

HEALTH_PATHS = r"/(?:healthz/|health)"  # the container's own health endpoints

_LOCATION = r"projects/[^/]+/locations/[^/]+"
_SERVICE = _LOCATION + r"/services/[^/]+"


class CloudRunEmulator(CloudRunControl):
    """The Cloud Run Admin API v2 and the services' own URLs, on one ``Router``."""

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
