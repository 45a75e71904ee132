"""Alert policies and notification channels for the Monitoring emulator.

``google.monitoring.v3.AlertPolicyService/ListAlertPolicies`` and
``NotificationChannelService/ListNotificationChannels``, as ``google-cloud-monitoring``'s
AlertPolicyServiceClient and NotificationChannelServiceClient send them over gRPC. Policies and
channels are ``monitoring_v3.AlertPolicy`` / ``NotificationChannel`` messages, stored per
project and named like the real ones (``projects/P/alertPolicies/ID``,
``projects/P/notificationChannels/ID``).

Honoured: ``name`` (``projects/P``; anything else is INVALID_ARGUMENT), ``page_size`` (default
100, at most 1000; negative is INVALID_ARGUMENT), ``page_token``; answers are ordered by name and
carry ``total_size`` (alert policies). A ``filter`` or ``order_by`` is UNIMPLEMENTED here
(the real API accepts them: https://cloud.google.com/monitoring/api/v3/sorting-and-filtering).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from typing import TypeVar

import grpc
from google.cloud import monitoring_v3

from bot.sandbox.emulator.monitoring_query import RpcError, invalid

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
Code = grpc.StatusCode
T = TypeVar("T")
Listing = monitoring_v3.ListAlertPoliciesRequest | monitoring_v3.ListNotificationChannelsRequest


class AlertPolicyStore:
    """The alert policies and notification channels of every project."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._policies: dict[str, monitoring_v3.AlertPolicy] = {}  # by name
        self._channels: dict[str, monitoring_v3.NotificationChannel] = {}

    # -- Python API ---------------------------------------------------------------------------

    def add_policy(
        self, project: str, policy: monitoring_v3.AlertPolicy
    ) -> monitoring_v3.AlertPolicy:
        """Store a policy (named ``projects/P/alertPolicies/ID`` when it has no name)."""
        stored = monitoring_v3.AlertPolicy(policy)
        if not stored.name:
            stored.name = f"projects/{project}/alertPolicies/{uuid.uuid4().int % 10**19}"
        if _project_of(stored.name, "alertPolicies") != project:
            raise ValueError(f"{stored.name} is not a policy of project {project}")
        with self._lock:
            self._policies[stored.name] = stored
        return monitoring_v3.AlertPolicy(stored)

    def add_channel(
        self, project: str, channel: monitoring_v3.NotificationChannel
    ) -> monitoring_v3.NotificationChannel:
        stored = monitoring_v3.NotificationChannel(channel)
        if not stored.name:
            stored.name = f"projects/{project}/notificationChannels/{uuid.uuid4().int % 10**19}"
        if _project_of(stored.name, "notificationChannels") != project:
            raise ValueError(f"{stored.name} is not a channel of project {project}")
        with self._lock:
            self._channels[stored.name] = stored
        return monitoring_v3.NotificationChannel(stored)

    def remove_policies(self, project: str, service: str | None = None) -> int:
        """Delete the project's policies (only those whose text names ``service``, if given)."""
        with self._lock:
            doomed = [
                name
                for name, policy in self._policies.items()
                if _project_of(name, "alertPolicies") == project
                and (service is None or _names(policy, service))
            ]
            for name in doomed:
                del self._policies[name]
        return len(doomed)

    def policy_for(
        self, project: str, service: str, metric: str
    ) -> monitoring_v3.AlertPolicy | None:
        """The first enabled policy of ``project`` whose condition names ``service`` and
        ``metric`` (e.g. ``run.googleapis.com/request_count``): the one an alert comes from."""
        for policy in self.policies(project):
            texts = [c.condition_threshold.filter for c in policy.conditions]
            if policy.enabled and _names(policy, service) and any(metric in t for t in texts):
                return policy
        return None

    def policies(self, project: str) -> list[monitoring_v3.AlertPolicy]:
        with self._lock:
            return [
                monitoring_v3.AlertPolicy(p)
                for name, p in sorted(self._policies.items())
                if _project_of(name, "alertPolicies") == project
            ]

    def channels(self, project: str) -> list[monitoring_v3.NotificationChannel]:
        with self._lock:
            return [
                monitoring_v3.NotificationChannel(c)
                for name, c in sorted(self._channels.items())
                if _project_of(name, "notificationChannels") == project
            ]

    # -- the RPCs -----------------------------------------------------------------------------

    def list_alert_policies(
        self, request: monitoring_v3.ListAlertPoliciesRequest
    ) -> monitoring_v3.ListAlertPoliciesResponse:
        project = _checked(request)
        found = self.policies(project)
        chosen, token = _page(found, request)
        return monitoring_v3.ListAlertPoliciesResponse(
            alert_policies=chosen, next_page_token=token, total_size=len(found)
        )

    def list_notification_channels(
        self, request: monitoring_v3.ListNotificationChannelsRequest
    ) -> monitoring_v3.ListNotificationChannelsResponse:
        project = _checked(request)
        found = self.channels(project)
        chosen, token = _page(found, request)
        return monitoring_v3.ListNotificationChannelsResponse(
            notification_channels=chosen, next_page_token=token, total_size=len(found)
        )


def alert_resource_labels(
    policy: monitoring_v3.AlertPolicy, labels: dict[str, str]
) -> dict[str, str]:
    """The resource labels an incident of ``policy`` carries, from the series' ``labels``.

    A condition's time series are what its aggregations leave: with a cross-series reducer,
    only the ``groupByFields`` survive ("Fields not specified in groupByFields are aggregated
    away": Monitoring API, Aggregation), and the incident's ``resource.labels`` are that
    series' labels. A real error-ratio policy grouped by ``service_name`` alone sends no
    ``location`` (nor ``project_id``). Without a reducer every label is kept."""
    kept: set[str] | None = None
    for condition in policy.conditions:
        threshold = condition.condition_threshold
        aggregations = [*threshold.aggregations, *threshold.denominator_aggregations]
        reducing = [a for a in aggregations if a.cross_series_reducer]
        if not reducing:
            continue
        fields = {
            field.split(".", 2)[2]
            for field in reducing[-1].group_by_fields
            if field.startswith(("resource.label.", "resource.labels."))
        }
        kept = fields if kept is None else kept & fields
    if kept is None:
        return dict(labels)
    return {name: value for name, value in labels.items() if name in kept}


def _names(policy: monitoring_v3.AlertPolicy, service: str) -> bool:
    """Whether a condition of the policy filters on this service_name."""
    pattern = re.compile(rf"service_name\s*==?\s*([\"']){re.escape(service)}\1")
    texts = [
        query
        for c in policy.conditions
        for query in (
            c.condition_threshold.filter,
            c.condition_absent.filter,
            c.condition_matched_log.filter,
            c.condition_monitoring_query_language.query,
            c.condition_prometheus_query_language.query,
        )
    ]
    return any(pattern.search(text) for text in texts)


def _checked(request: Listing) -> str:
    match = re.fullmatch(r"projects/([^/]+)", request.name)
    if not match:
        raise invalid(f'Field name had an invalid value of "{request.name}": must be projects/P.')
    if request.filter or request.order_by:
        raise RpcError(Code.UNIMPLEMENTED, "filter and order_by are not supported here.")
    if request.page_size < 0:
        raise invalid("page_size must not be negative.")
    return match.group(1)


def _page(found: list[T], request: Listing) -> tuple[list[T], str]:
    size = min(request.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    offset = _offset(request.page_token)
    if offset > len(found):
        raise invalid("The page token is not valid.")
    end = offset + size
    return found[offset:end], _token(end) if end < len(found) else ""


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError) as error:
        raise invalid("The page token is not valid.") from error
    if not isinstance(offset, int) or offset < 0:
        raise invalid("The page token is not valid.")
    return offset


def _project_of(name: str, collection: str) -> str | None:
    match = re.fullmatch(rf"projects/([^/]+)/{collection}/[^/]+", name)
    return match.group(1) if match else None
