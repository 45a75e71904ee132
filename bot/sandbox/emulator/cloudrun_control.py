"""The Cloud Run emulator's control API (``/_emulator/...``): the Python API over HTTP, for the
sandbox's CLI and web page and for tests in other processes."""

from __future__ import annotations

from dataclasses import asdict

from bot.sandbox.emulator.cloudrun_model import (
    REVISION_START_FAILED,
    Behaviour,
    _json_object,
)
from bot.sandbox.emulator.cloudrun_serving import CloudRunServing
from bot.sandbox.emulator.http import HttpError, Request, Response, Router, json_response


class CloudRunControl(CloudRunServing):
    """``/_emulator/services``, ``/_emulator/revisions``, ``/_emulator/config``..."""

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
