"""Cloud Monitoring's alert policies and notification channels, read only (for the doctor).

``AlertPolicyServiceClient.list_alert_policies`` and
``NotificationChannelServiceClient.list_notification_channels`` (``google-cloud-monitoring``,
gRPC), both covered by ``roles/monitoring.viewer``
(https://cloud.google.com/iam/docs/roles-permissions/monitoring). Answers become plain
dataclasses; failures become MetricsError with the reason (``permission_denied``, ...), after
the same bounded retries as the Metrics adapter. With an emulator host the clients speak plain
gRPC to it (anonymous); otherwise Application Default Credentials.

Which policy watches which service is read from its conditions' queries: a Monitoring filter
(``resource.labels.service_name = "S"``, also ``resource.label.``), a log-match filter, MQL
(``service_name == 'S'``) or PromQL (``service_name="S"``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bot.gcp.errors import api_error_reason, describe
from bot.ports import MetricsError

ALERTS_PATH = "/alerts/monitoring"
MAX_BACKOFF_S = 2.0


# The labels of the cloud_run_revision monitored resource
# (https://cloud.google.com/monitoring/api/resources#tag_cloud_run_revision).
CLOUD_RUN_LABELS = ("project_id", "location", "service_name", "revision_name", "configuration_name")


@dataclass(frozen=True)
class AlertPolicy:
    name: str
    display_name: str
    enabled: bool
    queries: tuple[str, ...]  # each condition's filter(s) or query
    notification_channels: tuple[str, ...]
    # The resource labels its alerts carry: what its conditions' aggregations keep; None when
    # a condition is a query (MQL, PromQL, log match) whose result Runback cannot read here.
    alert_labels: tuple[str, ...] | None = CLOUD_RUN_LABELS


@dataclass(frozen=True)
class NotificationChannel:
    name: str
    type: str  # e.g. webhook_tokenauth, email
    url: str  # the webhook's URL; "" for other types
    enabled: bool


class CloudAlertPolicies:
    def __init__(
        self,
        emulator_grpc_host: str | None,
        retry_deadline_s: float = 10.0,
        attempt_timeout_s: float = 5.0,
    ) -> None:
        self._emulator_host = emulator_grpc_host
        self._deadline_s = retry_deadline_s
        self._attempt_timeout_s = min(attempt_timeout_s, retry_deadline_s)

    def policies(self, project: str) -> list[AlertPolicy]:
        """Every alert policy of ``project`` (all pages). Raises MetricsError."""
        from google.cloud import monitoring_v3

        client = self._client(monitoring_v3.AlertPolicyServiceClient)
        request = {"name": f"projects/{project}"}
        found = self._call(lambda: list(client.list_alert_policies(request, **self._options())))
        return [_policy(one) for one in found]

    def channels(self, project: str) -> dict[str, NotificationChannel]:
        """The notification channels of ``project`` by name. Raises MetricsError."""
        from google.cloud import monitoring_v3

        client = self._client(monitoring_v3.NotificationChannelServiceClient)
        request = {"name": f"projects/{project}"}
        found = self._call(
            lambda: list(client.list_notification_channels(request, **self._options()))
        )
        channels = [_channel(one) for one in found]
        return {channel.name: channel for channel in channels}

    # -- plumbing -----------------------------------------------------------------------------

    def _client(self, kind: Any) -> Any:
        if not self._emulator_host:
            return kind()
        import grpc
        from google.auth.credentials import AnonymousCredentials

        transport = kind.get_transport_class("grpc")(
            channel=grpc.insecure_channel(self._emulator_host),
            credentials=AnonymousCredentials(),  # ignored with a channel; never ADC
        )
        return kind(transport=transport)

    def _options(self) -> dict[str, Any]:
        from google.api_core import exceptions
        from google.api_core.retry import Retry, if_exception_type

        transient = if_exception_type(
            exceptions.ServiceUnavailable,
            exceptions.DeadlineExceeded,
            exceptions.ResourceExhausted,
            exceptions.InternalServerError,
        )
        retry = Retry(
            predicate=transient,
            initial=0.2,
            maximum=MAX_BACKOFF_S,
            multiplier=2.0,
            timeout=self._deadline_s,
        )
        return {"retry": retry, "timeout": self._attempt_timeout_s}

    @staticmethod
    def _call(fn: Any) -> Any:
        from google.api_core import exceptions

        try:
            return fn()
        except exceptions.RetryError as error:
            cause = error.cause if error.cause is not None else error
            raise MetricsError("unavailable", describe(cause)) from error
        except exceptions.GoogleAPICallError as error:
            raise MetricsError(api_error_reason(error), describe(error)) from error


def _policy(message: Any) -> AlertPolicy:
    queries: list[str] = []
    for condition in message.conditions:
        threshold = condition.condition_threshold
        queries += [threshold.filter, threshold.denominator_filter]
        queries.append(condition.condition_absent.filter)
        queries.append(condition.condition_matched_log.filter)
        queries.append(condition.condition_monitoring_query_language.query)
        queries.append(condition.condition_prometheus_query_language.query)
    # An unset ``enabled`` reads as False in proto3; the API always sets it on stored policies.
    enabled = bool(message.enabled) if "enabled" in message else True
    return AlertPolicy(
        name=message.name,
        display_name=message.display_name or message.name,
        enabled=enabled,
        queries=tuple(q for q in queries if q),
        notification_channels=tuple(message.notification_channels),
        alert_labels=alert_labels(message),
    )


def alert_labels(message: Any) -> tuple[str, ...] | None:
    """The resource labels an alert of this policy carries (in CLOUD_RUN_LABELS' order).

    A threshold condition's series are what its aggregations leave: with a cross-series
    reducer only its ``groupByFields`` ("Fields not specified in groupByFields are aggregated
    away": Monitoring API, Aggregation); without one, every label. A policy's alerts carry
    what its most reducing condition keeps. None when a condition is a query."""
    kept = set(CLOUD_RUN_LABELS)
    for condition in message.conditions:
        if "condition_threshold" not in condition:
            return None
        threshold = condition.condition_threshold
        aggregations = [*threshold.aggregations, *threshold.denominator_aggregations]
        reducing = [a for a in aggregations if a.cross_series_reducer]
        if reducing:
            fields = reducing[-1].group_by_fields
            kept &= {f.split(".", 2)[2] for f in fields if f.startswith(RESOURCE_LABEL_PREFIXES)}
    return tuple(label for label in CLOUD_RUN_LABELS if label in kept)


RESOURCE_LABEL_PREFIXES = ("resource.label.", "resource.labels.")


def _channel(message: Any) -> NotificationChannel:
    enabled = bool(message.enabled) if "enabled" in message else True
    return NotificationChannel(
        name=message.name,
        type=message.type_,
        url=str(message.labels.get("url", "")),
        enabled=enabled,
    )


# -- which policies concern a service (pure) ---------------------------------------------------


def watches(policy: AlertPolicy, service: str) -> bool:
    """Whether one of the policy's conditions names ``service`` by its service_name label."""
    name = re.escape(service)
    pattern = re.compile(rf"\bservice_name\s*(?:=|==)\s*([\"']){name}\1")
    return any(pattern.search(query) for query in policy.queries)


def webhook_problem(channel: NotificationChannel) -> str | None:
    """None when the channel sends alerts to a Runback (a webhook to /alerts/monitoring with a
    token); else why not: "not_runback" or "no_token"."""
    if not channel.type.startswith("webhook") or not channel.enabled:
        return "not_runback"
    parts = urlsplit(channel.url)
    if parts.path.rstrip("/") != ALERTS_PATH:
        return "not_runback"
    if not parse_qs(parts.query).get("token"):
        return "no_token"
    return None
