"""Updates and their long-running operations: a PATCH is checked, applied to the spec at once,
and completed ``operation_delay_s`` seconds later (lazily, on any read), or failed as told
(``fail_next_operations``, ``fail_next_revisions``, ``revision_check``)."""

from __future__ import annotations

import string
import time
import uuid
from collections.abc import Sequence
from typing import Any

from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2, json_format

from bot.sandbox.emulator.cloudrun_checks import (
    _mask_paths,
    _parse_service_body,
    _validate_template,
    _validate_traffic,
)
from bot.sandbox.emulator.cloudrun_model import (
    NOT_FOUND,
    REVISION,
    REVISION_START_FAILED,
    AlreadyExists,
    Behaviour,
    State,
    StatusError,
    _condition,
    _config_of,
    _etag,
    _int_enums,
    _location,
    _mark_ready,
    _Operation,
    _short,
    _statuses,
)
from bot.sandbox.emulator.cloudrun_revisions import (
    check_revision_name,
    check_tag_lengths,
    check_template_metadata,
)
from bot.sandbox.emulator.cloudrun_store import CloudRunStore
from bot.sandbox.emulator.http import HttpError, Request, Response


class CloudRunOperations(CloudRunStore):
    """PATCH, the operations it starts, and what is served once they are done."""

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

    def traffic(self, service_name: str) -> list[dict[str, Any]]:
        """What the service actually serves (its ``trafficStatuses``)."""
        with self._lock:
            self._settle()
            service = self._find_by_short(service_name)
            return [
                {"revision": s.revision, "percent": s.percent, "tag": s.tag}
                for s in service.traffic_statuses
            ]

    def revision(self, revision: str) -> run_v2.Revision:
        """A copy of a revision as the API shows it (its settings, containers, conditions)."""
        with self._lock:
            self._settle()
            return run_v2.Revision(
                self._revisions[f"{self._service_of(revision)}/revisions/{revision}"]
            )

    # -- Admin API handlers: updates and operations -------------------------------------------

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
