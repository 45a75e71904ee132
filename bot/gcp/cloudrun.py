"""The CloudRun port over the Cloud Run Admin API v2 (``google-cloud-run``, REST transport).

Google libraries are imported on first use, never at module import: the bot's cold start must
stay fast enough for Slack's 3-second ack.

Every call is retried with exponential backoff on transient failures (503, 429, 500, 504,
request timeouts and connection errors) for at most ``retry_deadline_s``; after that it raises
CloudRunError("unavailable"). Each HTTP attempt waits at most ``attempt_timeout_s``, so the
worst case is about ``retry_deadline_s + attempt_timeout_s``. A 409 on update is an
EtagConflict (ABORTED) or a RevisionExists (ALREADY_EXISTS) and is never retried;
FAILED_PRECONDITION is a stale etag too. A conflict that follows a retried attempt may mean the
first attempt was applied: see ``_update``.

``start_deploy`` builds the new revision from a base revision (blue, the revision serving
now) and PATCHes the service's whole template with it plus the new traffic, under the update
mask ``template,traffic``: the image of the ingress container (the one with a port; sidecars
have none) and ``revision`` change, and everything else is the base revision's own, read from
the revision itself (``template_from_revision``): containers, service account, scaling, VPC
access, volumes, timeout, concurrency, execution environment, labels. Not the service's
current template: after a rollback (traffic moved back to an older revision) the template
still holds the rolled-back-from revision's settings, and a PATCH of only
``template.containers`` would carry those into the new revision. The caller's ``etag`` goes in
the body, so a service changed since the caller read it is a 409. Without a base revision the
narrow mask ``template.containers,template.revision,traffic`` keeps the rest of the service's
template as it is.

``start_env_update`` (a feature flag flip, a restore) is the same PATCH from its base revision,
with one environment variable of its ingress container changed
(https://cloud.google.com/run/docs/configuring/services/environment-variables: changing a
variable creates a new revision).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from bot.gcp.errors import api_error_reason, describe
from bot.ports import (
    CloudRunError,
    EnvVar,
    EtagConflict,
    Revision,
    RevisionExists,
    ServiceRef,
    ServiceState,
    TrafficStatus,
    TrafficTarget,
)

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import run_v2

T = TypeVar("T")

MAX_BACKOFF_S = 2.0
POLL_INITIAL_S = 0.1
POLL_MAX_S = 2.0
DEPLOY_MASK = ("template.containers", "template.revision", "traffic")
BASE_MASK = ("template", "traffic")  # a new revision built from a base revision's whole template
APPLIED = "applied:"  # prefix of the "operation" of a change found already in place


class CloudRunAdmin:
    """CloudRun (bot.ports) backed by run_v2.ServicesClient and RevisionsClient."""

    def __init__(
        self,
        emulator_host: str | None,
        retry_deadline_s: float = 20.0,
        initial_backoff_s: float = 0.2,
        attempt_timeout_s: float = 10.0,
    ) -> None:
        self._emulator_host = emulator_host
        self._deadline_s = retry_deadline_s
        self._attempt_timeout_s = min(attempt_timeout_s, retry_deadline_s)
        self._initial_backoff_s = initial_backoff_s
        self._lock = threading.Lock()
        self._clients: tuple[run_v2.ServicesClient, run_v2.RevisionsClient] | None = None
        self._session: tuple[Any, str] | None = None  # (HTTP session, endpoint) for raw reads

    # -- the CloudRun port --------------------------------------------------------------------

    def get_service(self, ref: ServiceRef) -> ServiceState:
        services, _ = self._get_clients()
        service = self._call(lambda: services.get_service(name=ref.path, **self._call_options()))
        return service_state(ref, service)

    def list_revisions(self, ref: ServiceRef) -> list[Revision]:
        """Every revision of the service, newest first."""
        _, revisions = self._get_clients()
        found = self._call(
            lambda: list(revisions.list_revisions(parent=ref.path, **self._call_options()))
        )
        converted = [to_revision(r) for r in found]
        return sorted(converted, key=lambda r: r.created, reverse=True)

    def get_revision(self, ref: ServiceRef, name: str) -> Revision:
        _, revisions = self._get_clients()
        path = f"{ref.path}/revisions/{name}"
        return to_revision(
            self._call(lambda: revisions.get_revision(name=path, **self._call_options()))
        )

    def start_traffic_update(self, ref: ServiceRef, targets: list[TrafficTarget], etag: str) -> str:
        from google.cloud import run_v2

        service = run_v2.Service(name=ref.path, etag=etag, traffic=_traffic(targets))
        return self._update(service, ["traffic"])

    def start_deploy(
        self,
        ref: ServiceRef,
        image: str,
        revision_name: str,
        targets: list[TrafficTarget],
        etag: str,
        env: Mapping[str, str] | None = None,
        base_revision: str = "",
    ) -> str:
        """New revision ``revision_name`` with ``image`` plus ``targets``, in one PATCH; ``env``
        sets plain variables of the ingress container (a feature flag that starts off), the
        others kept as they are; with ``base_revision``, its containers rather than the
        template's (see ``_template``).

        See the module docstring for the read-modify-write and the update mask.
        """
        from google.cloud import run_v2

        if not revision_name:
            raise CloudRunError("invalid_argument", "a deploy needs an explicit revision name")
        template, base = self._template(ref, base_revision)
        ingress = template.containers[self._ingress(ref, template.containers)]
        if base is None or image != base.containers[self._ingress(ref, base.containers)].image:
            ingress.image = image  # else the base's own image, pinned to its digest (a drill)
        for name, value in (env or {}).items():
            ingress.env = with_env(ingress.env, EnvVar(name, value))
        template.revision = revision_name
        service = run_v2.Service(
            name=ref.path, etag=etag, template=template, traffic=_traffic(targets)
        )
        return self._update(service, list(BASE_MASK if base is not None else DEPLOY_MASK))

    def _template(self, ref: ServiceRef, base_revision: str) -> tuple[Any, Any]:
        """The template a new revision starts from, and the base revision it was read from:
        with ``base_revision``, that revision's whole template (``template_from_revision``);
        without, a copy of the service's template (None for the revision)."""
        from google.cloud import run_v2

        services, _ = self._get_clients()
        if not base_revision:
            current = self._call(
                lambda: services.get_service(name=ref.path, **self._call_options())
            )
            return run_v2.RevisionTemplate(current.template), None
        base, digests = self._revision_with_digests(f"{ref.path}/revisions/{base_revision}")
        return template_from_revision(base, digests), base

    def _revision_with_digests(self, path: str) -> tuple[Any, dict[str, str]]:
        """The revision and its containers' resolved digests by container name
        (``containerStatuses[].imageDigest``). The v2 REST Revision has that field, but this
        version of run_v2 does not model it (its REST transport drops what it does not know),
        so the revision is read as JSON with the library's own credentials and errors."""
        import json

        from google.api_core import exceptions
        from google.cloud import run_v2

        session, endpoint = self._raw_session()

        def fetch() -> Any:
            answer = session.get(f"{endpoint}/v2/{path}", timeout=self._attempt_timeout_s)
            if answer.status_code >= 400:
                raise exceptions.from_http_response(answer)
            return answer.json()

        raw = self._call(lambda: self._retry()(fetch)())
        revision = run_v2.Revision.from_json(json.dumps(raw), ignore_unknown_fields=True)
        statuses = raw.get("containerStatuses") or []
        digests = {str(s.get("name", "")): str(s.get("imageDigest", "")) for s in statuses}
        if len(statuses) == 1 and len(revision.containers) == 1:  # unnamed single container
            digests[revision.containers[0].name] = digests[str(statuses[0].get("name", ""))]
        return revision, {name: digest for name, digest in digests.items() if digest}

    def _raw_session(self) -> tuple[Any, str]:
        with self._lock:
            if self._session is None:
                if self._emulator_host:
                    import requests

                    self._session = (requests.Session(), f"http://{self._emulator_host}")
                else:
                    import google.auth
                    from google.auth.transport.requests import AuthorizedSession

                    scopes = ["https://www.googleapis.com/auth/cloud-platform"]
                    credentials, _ = google.auth.default(scopes=scopes)
                    self._session = (AuthorizedSession(credentials), "https://run.googleapis.com")
            return self._session

    def start_env_update(
        self,
        ref: ServiceRef,
        base_revision: str,
        env: EnvVar,
        revision_name: str,
        targets: list[TrafficTarget],
        etag: str,
        cloudsql_swap: tuple[str, str] | None = None,
    ) -> str:
        """New revision ``revision_name``: ``base_revision``'s containers with one variable of
        the ingress container set to ``env`` (a plain value or a ``valueSource.secretKeyRef``),
        plus ``targets``, in one PATCH. ``cloudsql_swap`` (old, new connection name) also moves
        the base revision's Cloud SQL volume to the new instance, so ``/cloudsql/NEW`` exists in
        the container (https://cloud.google.com/run/docs/configuring/services/cloud-sql-connect).

        The whole template comes from the base revision (``template_from_revision``), not
        from the service's template: after a rollback that still holds the newer revision that
        was rolled back from (image and settings), and a flag flip or a restore must not bring
        it back.
        """
        from google.cloud import run_v2

        if not revision_name or not base_revision:
            raise CloudRunError("invalid_argument", "an env update needs a base and a name")
        template, _ = self._template(ref, base_revision)
        ingress = template.containers[self._ingress(ref, template.containers)]
        ingress.env = with_env(ingress.env, env)
        template.revision = revision_name
        if cloudsql_swap:
            _swap_cloudsql(template, *cloudsql_swap)
        service = run_v2.Service(
            name=ref.path, etag=etag, template=template, traffic=_traffic(targets)
        )
        return self._update(service, list(BASE_MASK))

    @staticmethod
    def _ingress(ref: ServiceRef, containers: Any) -> int:
        ingress = ingress_container(containers)
        if ingress is None:
            raise CloudRunError(
                "bad_response", f"{ref.path} has no ingress container (one with a port)"
            )
        return ingress

    def wait_operation(self, operation_name: str, timeout_s: float) -> ServiceState:
        """Poll the operation until done; raises CloudRunError if it failed or timed out."""
        if operation_name.startswith(APPLIED):
            return self._wait_reconciled(ref_from_name(operation_name[len(APPLIED) :]), timeout_s)
        services, _ = self._get_clients()
        deadline = time.monotonic() + timeout_s
        delay = POLL_INITIAL_S
        while True:
            operation = self._call(
                lambda: services.get_operation({"name": operation_name}, **self._call_options())
            )
            if operation.done:
                return _operation_result(operation)
            if time.monotonic() + delay > deadline:
                raise CloudRunError(
                    "operation_timeout", f"{operation_name} not done after {timeout_s:g}s"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX_S)

    # -- plumbing -----------------------------------------------------------------------------

    def _wait_reconciled(self, ref: ServiceRef, timeout_s: float) -> ServiceState:
        """Wait for a change whose operation name was lost (see ``_update``) to settle."""
        deadline = time.monotonic() + timeout_s
        delay = POLL_INITIAL_S
        while True:
            state = self.get_service(ref)
            if not state.reconciling:
                return state
            if time.monotonic() + delay > deadline:
                raise CloudRunError("operation_timeout", f"{ref.path} still reconciling")
            time.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX_S)

    def _update(self, service: run_v2.Service, paths: list[str]) -> str:
        """PATCH ``service`` under the update mask ``paths``; returns the operation name.

        An attempt may be applied by Cloud Run and still fail on the way back (a timeout, a
        503): the retry then carries a stale etag and is refused. When that happens after a
        retry, the service is read again and, if it already holds what was asked, the change
        is accepted: the operation name returned is then ``APPLIED + service name``, which
        ``wait_operation`` follows by reading the service.
        """
        from google.protobuf import field_mask_pb2

        services, _ = self._get_clients()
        mask = field_mask_pb2.FieldMask(paths=paths)
        retried: list[Exception] = []
        options: dict[str, Any] = {
            "retry": self._retry(on_error=retried.append),
            "timeout": self._attempt_timeout_s,
        }
        try:
            operation = self._call(
                lambda: services.update_service(service=service, update_mask=mask, **options),
                conflict_is_etag=True,
            )
        except EtagConflict:
            if retried and self._already_applied(service, paths):
                return APPLIED + service.name
            raise
        return str(operation.operation.name)

    def _already_applied(self, wanted: run_v2.Service, paths: list[str]) -> bool:
        services, _ = self._get_clients()
        current = self._call(lambda: services.get_service(name=wanted.name, **self._call_options()))
        if _targets(current.traffic) != _targets(wanted.traffic):
            return False
        template = "template" in paths
        revision_sent = template or "template.revision" in paths
        if revision_sent and current.template.revision != wanted.template.revision:
            return False

        def containers(service: run_v2.Service) -> list[tuple[str, list[tuple[str, str]]]]:
            return [
                (c.image, [(e.name, e.value) for e in c.env]) for c in service.template.containers
            ]

        containers_sent = template or "template.containers" in paths
        return not containers_sent or containers(current) == containers(wanted)

    @property
    def ready(self) -> bool:
        """Whether the client library is loaded and its client built (``warm_up`` does it)."""
        return self._clients is not None

    def warm_up(self) -> None:
        """Import the library and build the client now, off the first request's path."""
        self._get_clients()

    def _get_clients(self) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
        with self._lock:
            if self._clients is None:
                self._clients = self._make_clients()
            return self._clients

    def _make_clients(self) -> tuple[run_v2.ServicesClient, run_v2.RevisionsClient]:
        from google.cloud import run_v2

        options: dict[str, Any] = {"transport": "rest"}
        if self._emulator_host:
            from google.api_core.client_options import ClientOptions
            from google.auth.credentials import AnonymousCredentials

            options["credentials"] = AnonymousCredentials()
            options["client_options"] = ClientOptions(api_endpoint=f"http://{self._emulator_host}")
        return run_v2.ServicesClient(**options), run_v2.RevisionsClient(**options)

    def _call_options(self) -> dict[str, Any]:
        return {
            "retry": self._retry(),
            "timeout": self._attempt_timeout_s,
        }

    def _retry(self, on_error: Callable[[Exception], None] | None = None) -> Retry:
        import requests
        from google.api_core import exceptions
        from google.api_core.retry import Retry, if_exception_type

        transient = if_exception_type(
            exceptions.ServiceUnavailable,
            exceptions.TooManyRequests,
            exceptions.InternalServerError,
            exceptions.GatewayTimeout,
            exceptions.DeadlineExceeded,
            requests.exceptions.Timeout,
            requests.exceptions.ConnectionError,
        )
        return Retry(
            predicate=transient,
            initial=self._initial_backoff_s,
            maximum=MAX_BACKOFF_S,
            multiplier=2.0,
            timeout=self._deadline_s,
            on_error=on_error,
        )

    def _call(self, fn: Callable[[], T], conflict_is_etag: bool = False) -> T:
        """Run one (already retried) client call, translating failures to CloudRunError."""
        import requests
        from google.api_core import exceptions

        try:
            return fn()
        except exceptions.RetryError as error:
            cause = error.cause if error.cause is not None else error
            raise CloudRunError("unavailable", describe(cause)) from error
        except exceptions.Conflict as error:  # 409: ABORTED / ALREADY_EXISTS
            if _rpc_status(error) == "ALREADY_EXISTS":
                raise RevisionExists(error.message) from error
            if conflict_is_etag:
                raise EtagConflict(error.message) from error
            raise CloudRunError("conflict", error.message) from error
        except exceptions.GoogleAPICallError as error:
            if conflict_is_etag and _stale_etag(error):
                raise EtagConflict(error.message) from error
            raise CloudRunError(api_error_reason(error), describe(error)) from error
        except requests.exceptions.RequestException as error:
            raise CloudRunError("unavailable", describe(error)) from error


# -- conversions (pure, no I/O) ---------------------------------------------------------------


def service_state(ref: ServiceRef, service: run_v2.Service) -> ServiceState:
    """A run_v2 Service as the port's ServiceState; traffic is what actually serves."""
    from google.cloud import run_v2

    latest_type = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
    latest_ready = _short(service.latest_ready_revision)
    traffic = tuple(
        TrafficStatus(
            revision=status.revision or (latest_ready if status.type_ == latest_type else ""),
            percent=status.percent,
            tag=status.tag,
            uri=status.uri,
            latest=status.type_ == latest_type,
        )
        for status in service.traffic_statuses
    )
    template = service.template
    return ServiceState(
        ref=ref,
        etag=service.etag,
        uri=service.uri,
        traffic=traffic,
        latest_ready_revision=latest_ready,
        reconciling=service.reconciling,
        failure="" if service.reconciling else terminal_failure(service.terminal_condition),
        cpu_throttled=cpu_throttled(template.containers),
        min_instances=max(template.scaling.min_instance_count, service.scaling.min_instance_count),
    )


def terminal_failure(condition: Any) -> str:
    """Why Cloud Run says the service's last change failed: its terminalCondition FAILED, with
    its reason (one of ``reason``, ``revisionReason``, ``executionReason``) and message
    (https://cloud.google.com/run/docs/reference/rest/v2/Condition); "" when it did not."""
    from google.cloud import run_v2

    if condition.state != run_v2.Condition.State.CONDITION_FAILED:
        return ""
    reasons = ("reason", "revision_reason", "execution_reason")
    reason = next((getattr(condition, r).name for r in reasons if r in condition), "")
    message = condition.message.strip()
    return ": ".join(part for part in (reason, message) if part) or "FAILED"


def cpu_throttled(containers: Any) -> bool:
    """Whether the CPU is allocated only while requests are in flight (request-based billing).

    ``resources.cpuIdle``: "Determines whether CPU is only allocated during requests (true by
    default). However, if ResourceRequirements is set, the caller must explicitly set this
    field to true to preserve the default behavior" (Cloud Run Admin API v2,
    ResourceRequirements). So no ``resources`` at all is throttled, and with ``resources`` the
    field says (proto3: absent reads false, CPU always allocated)."""
    ingress = ingress_container(containers)
    if ingress is None:
        return any("resources" not in c or c.resources.cpu_idle for c in containers)
    container = containers[ingress]
    return "resources" not in container or bool(container.resources.cpu_idle)


def to_revision(revision: run_v2.Revision) -> Revision:
    from google.cloud import run_v2

    succeeded = run_v2.Condition.State.CONDITION_SUCCEEDED
    # The Revision's "Ready" condition says whether it can serve; its message says why not.
    # https://cloud.google.com/run/docs/reference/rest/v2/Condition
    conditions = [c for c in revision.conditions if c.type_ == "Ready"]
    ready = any(c.state == succeeded for c in conditions)
    why = "" if ready else next((c.message for c in conditions if c.message), "")
    stamp = revision.create_time.timestamp() if revision.create_time else 0.0
    created = datetime.fromtimestamp(stamp, UTC)
    ingress = ingress_container(revision.containers)
    container = revision.containers[ingress] if ingress is not None else None
    return Revision(
        name=_short(revision.name),
        image=container.image if container else "",
        created=created,
        ready=ready,
        ready_message=why,
        env=tuple(_env_var(var) for var in container.env) if container else (),
        service_account=revision.service_account,
    )


# Cloud Run's own label and annotation namespaces: read-only on a revision, and refused in a v2
# template ("Cloud Run API v2 does not support labels with `run.googleapis.com`,
# `cloud.googleapis.com`, `serving.knative.dev`, or `autoscaling.knative.dev` namespaces, and
# they will be rejected": RevisionTemplate.labels, Cloud Run Admin API v2 reference).
SYSTEM_NAMESPACES = (
    "run.googleapis.com",
    "cloud.googleapis.com",
    "serving.knative.dev",
    "autoscaling.knative.dev",
)


def template_from_revision(
    revision: run_v2.Revision, digests: Mapping[str, str] | None = None
) -> run_v2.RevisionTemplate:
    """The template ``revision`` was created from, as far as the revision records it: every
    RevisionTemplate field a Revision has (containers, volumes, service account, scaling, VPC
    access, timeout, concurrency, execution environment, encryption, session affinity, node
    selector, service mesh, labels and annotations but Cloud Run's own), ``revision`` unset.

    The one way every workflow that creates a revision from another (a release from blue, a
    flag flip, a rollback drill, a restore) builds it, so that the new revision is the base
    revision with only what the workflow means to change.

    ``digests`` (container name -> the digest Cloud Run resolved when it created the revision,
    ``containerStatuses[].imageDigest``) pins each container's image to it: a tag may have
    moved since, and "the same image" must be the same code."""
    from google.cloud import run_v2
    from google.protobuf import json_format

    raw = json_format.MessageToDict(run_v2.Revision.pb(revision))
    revision_fields = run_v2.Revision.pb().DESCRIPTOR.fields_by_name
    shared = set(run_v2.RevisionTemplate.meta.fields) & set(revision_fields)
    wanted = {revision_fields[name].json_name for name in shared}
    template_pb = run_v2.RevisionTemplate.pb()()
    json_format.ParseDict({key: raw[key] for key in wanted & set(raw)}, template_pb)
    template = run_v2.RevisionTemplate.wrap(template_pb)
    for container in template.containers:
        container.image = pinned_image(container.image, (digests or {}).get(container.name, ""))
    for mapping in (template.labels, template.annotations):
        for key in [k for k in mapping if k.split("/", 1)[0] in SYSTEM_NAMESPACES and "/" in k]:
            del mapping[key]
    return template


def pinned_image(image: str, digest: str) -> str:
    """``image`` by its digest: ``repo@sha256:...``. ``digest`` may be the full reference (as
    Cloud Run shows it) or ``sha256:...`` alone; none leaves ``image`` as it is."""
    if not digest:
        return image
    if "@" in digest:
        return digest
    name = image.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    repository = name[:colon] if colon > slash else name
    return f"{repository}@{digest}"


def _env_var(var: Any) -> EnvVar:
    # https://cloud.google.com/run/docs/reference/rest/v2/Container#EnvVar: value or valueSource
    ref = var.value_source.secret_key_ref if "value_source" in var else None
    if ref and ref.secret:
        return EnvVar(name=var.name, secret=ref.secret, secret_version=ref.version)
    return EnvVar(name=var.name, value=var.value)


def with_env(env: Any, var: EnvVar) -> list[Any]:
    """A container's environment with ``var`` set (a plain value or a Secret Manager
    reference): changed in place where it is (every other variable as it was, in order),
    appended when it was not there."""
    from google.cloud import run_v2

    result = [run_v2.EnvVar(old) for old in env if old.name != var.name]
    position = next((i for i, old in enumerate(env) if old.name == var.name), len(result))
    if var.from_secret:
        ref = run_v2.SecretKeySelector(secret=var.secret, version=var.secret_version or "latest")
        fresh = run_v2.EnvVar(name=var.name, value_source=run_v2.EnvVarSource(secret_key_ref=ref))
    else:
        fresh = run_v2.EnvVar(name=var.name, value=var.value)
    result.insert(position, fresh)
    return result


def _swap_cloudsql(template: Any, old: str, new: str) -> bool:
    """Replace connection ``old`` by ``new`` in the template's Cloud SQL volumes."""
    swapped = False
    for volume in template.volumes:
        if "cloud_sql_instance" in volume and old in volume.cloud_sql_instance.instances:
            instances = list(volume.cloud_sql_instance.instances)
            volume.cloud_sql_instance.instances = [new if i == old else i for i in instances]
            swapped = True
    return swapped


def ingress_container(containers: Any) -> int | None:
    """The index of the container that receives requests: the only one, or the one with a port.

    With sidecars, exactly one container declares a port and it is the ingress container
    (https://cloud.google.com/run/docs/deploying#sidecars); ``containers[0]`` may be a sidecar.
    """
    if len(containers) == 1:
        return 0
    with_port = [i for i, container in enumerate(containers) if container.ports]
    return with_port[0] if len(with_port) == 1 else None


def ref_from_name(name: str) -> ServiceRef:
    """``projects/P/locations/R/services/S`` -> ServiceRef."""
    parts = name.split("/")
    if len(parts) != 6 or parts[0] != "projects" or parts[2] != "locations":
        raise CloudRunError("bad_response", f"unexpected service name {name!r}")
    return ServiceRef(project=parts[1], region=parts[3], name=parts[5])


def _operation_result(operation: Any) -> ServiceState:
    from google.api_core import protobuf_helpers
    from google.cloud import run_v2

    if operation.HasField("error"):
        raise CloudRunError(
            "operation_failed", f"code {operation.error.code}: {operation.error.message}"
        )
    try:
        service = protobuf_helpers.from_any_pb(run_v2.Service, operation.response)
    except TypeError as error:
        raise CloudRunError("bad_response", str(error)) from error
    return service_state(ref_from_name(service.name), service)


def _traffic(targets: list[TrafficTarget]) -> list[run_v2.TrafficTarget]:
    """The port's targets as run_v2 targets, each pinned to its revision by name."""
    from google.cloud import run_v2

    revision_type = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
    return [
        run_v2.TrafficTarget(type_=revision_type, revision=t.revision, percent=t.percent, tag=t.tag)
        for t in targets
    ]


def _stale_etag(error: Any) -> bool:
    """FAILED_PRECONDITION is how AIP-154 first said "stale etag" (it maps to HTTP 400, or 412);
    it now says ABORTED (409), and Google APIs answer either (aip-dev/google.aip.dev#705)."""
    from google.api_core import exceptions

    if isinstance(error, exceptions.FailedPrecondition | exceptions.PreconditionFailed):
        return True
    return _rpc_status(error) == "FAILED_PRECONDITION"


def _targets(traffic: Any) -> list[tuple[str, int, str]]:
    return sorted((t.revision, t.percent, t.tag) for t in traffic)


def _rpc_status(error: Any) -> str:
    """The google.rpc status name of a REST error (``error.status`` in its JSON body)."""
    try:
        status = error.response.json()["error"]["status"]
    except (AttributeError, KeyError, TypeError, ValueError):
        return ""
    return status if isinstance(status, str) else ""


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1] if name else ""
