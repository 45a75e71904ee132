"""The Cloud Run emulator's state: services, revisions and their behaviours, kept as
``run_v2.Service`` / ``run_v2.Revision`` messages; seeding, lookups, and the snapshots sent to
listeners. The layers above it (operations, serving, control, ``cloudrun.py``) add the rest."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import run_v2

from bot.sandbox.emulator.cloudrun_checks import _seed_targets
from bot.sandbox.emulator.cloudrun_ingress import IngressMixin
from bot.sandbox.emulator.cloudrun_model import (
    DEFAULT_SERVICE_ACCOUNT,
    METRICS_HISTORY_S,
    Behaviour,
    NotFound,
    ServiceSnapshot,
    SnapshotListener,
    State,
    _behaviour_changes,
    _condition,
    _config_of,
    _Counters,
    _etag,
    _Operation,
    _short,
    _statuses,
)
from bot.sandbox.emulator.cloudrun_revisions import (
    ImageRegistry,
    ImagesMixin,
    container_statuses,
    revision_settings,
    seed_template,
)
from bot.sandbox.emulator.identity import IdentityEmulator


class CloudRunStore(IngressMixin, ImagesMixin):
    """Services and revisions, their behaviours, and who listens to their changes."""

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

    def location_of(self, service: str) -> tuple[str, str]:
        """(project, region) of the service named ``service``; KeyError when there is none."""
        with self._lock:
            parts = self._find_by_short(service).name.split("/")
            return parts[1], parts[3]

    def behaviour(self, revision: str) -> dict[str, Any]:
        with self._lock:
            return asdict(self._require_behaviour(revision))

    # -- state helpers ------------------------------------------------------------------------

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
