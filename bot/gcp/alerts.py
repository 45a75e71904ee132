"""Cloud Monitoring's webhook payload (version 1.2), parsed strictly and defensively.

The endpoint is reachable from the internet: the payload is size-limited, identifiers are
length-limited, and anything unexpected is a clear 400, never a crash and never a message.
Display strings (summary, policy, condition and metric names) are cut to length instead: a real
alert with a long summary is never lost to a 400. NUL characters are dropped everywhere.

Labels a policy's condition does not group by are aggregated away ("Fields not specified in
groupByFields are aggregated away": Monitoring API, Aggregation): an error-ratio policy grouped
by ``service_name`` sends no ``location`` (nor ``project_id``); see bot/ops/incidents/intake.py.

Payload reference (version 1.2, "Webhooks" schema):
https://cloud.google.com/monitoring/support/notification-options ; the resource labels of a
Cloud Run alert are those of the ``cloud_run_revision`` monitored resource (project_id,
service_name, revision_name, location, configuration_name):
https://cloud.google.com/monitoring/api/resources#tag_cloud_run_revision
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

MAX_PAYLOAD_BYTES = 64 * 1024
SHORT = 256
LONG = 4000
# Alert times are seconds since the epoch; anything past the year 9999 is not a time.
LATEST_EPOCH_S = 253_402_300_799
CONSOLE_HOST = "console.cloud.google.com"


def _clipped(limit: int) -> BeforeValidator:
    def clip(value: Any) -> Any:
        return value[:limit] if isinstance(value, str) else value

    return BeforeValidator(clip)


ShortText = Annotated[str, _clipped(SHORT)]
LongText = Annotated[str, _clipped(LONG)]


class AlertError(Exception):
    """The payload is not a usable Cloud Monitoring alert; the message says why."""


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _string_labels(labels: Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or len(labels) > 64:
        raise ValueError("must be an object of at most 64 labels")
    return {str(k)[:SHORT]: str(v)[:SHORT] for k, v in labels.items()}


Labels = Annotated[dict[str, str], BeforeValidator(_string_labels)]


class AlertResource(_Loose):
    type: str = Field(default="", max_length=SHORT)
    labels: Labels = {}

    @property
    def project_id(self) -> str:
        return self.labels.get("project_id", "")

    @property
    def location(self) -> str:
        return self.labels.get("location", "")


class AlertMetric(_Loose):
    type: ShortText = ""
    display_name: ShortText = Field(default="", alias="displayName")
    labels: Labels = {}


def _seconds(duration: Any) -> float | None:
    """A protobuf Duration in JSON (``"60s"``, ``"1.5s"``) as seconds; None if it is not one."""
    if not isinstance(duration, str) or not duration.endswith("s"):
        return None
    try:
        seconds = float(duration[:-1])
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0 < seconds <= 86400 * 30 else None


class AlertCondition(_Loose):
    """The policy's condition (an ``AlertPolicy.Condition`` in JSON, camelCase): read only for
    the window its value was measured over. A payload without one, or with another kind of
    condition, has no window."""

    condition_threshold: dict[str, Any] = Field(default_factory=dict, alias="conditionThreshold")

    @property
    def window_s(self) -> float | None:
        """The alignment period of the condition's first aggregation: what
        ``observed_value`` was measured over."""
        aggregations = self.condition_threshold.get("aggregations")
        if not isinstance(aggregations, list) or not aggregations:
            return None
        first = aggregations[0]
        return _seconds(first.get("alignmentPeriod")) if isinstance(first, dict) else None

    @property
    def duration_s(self) -> float | None:
        """How long the value stayed past the threshold before the incident opened."""
        return _seconds(self.condition_threshold.get("duration"))


class Incident(_Loose):
    incident_id: str = Field(min_length=1, max_length=SHORT)
    state: str
    scoping_project_id: ShortText = ""  # the metrics scope's project (the policy's)
    policy_name: ShortText = ""
    condition_name: ShortText = ""
    resource: AlertResource = AlertResource()
    metric: AlertMetric = AlertMetric()
    condition: AlertCondition = AlertCondition()
    observed_value: str = Field(default="", max_length=64)
    threshold_value: str = Field(default="", max_length=64)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    url: str = ""
    summary: LongText = ""
    documentation: str = ""

    @field_validator("state")
    @classmethod
    def _state(cls, state: str) -> str:
        state = state.strip().lower()
        if state not in ("open", "closed"):
            raise ValueError("must be 'open' or 'closed'")
        return state

    @field_validator("condition", mode="before")
    @classmethod
    def _condition(cls, value: Any) -> Any:
        """An object in real alerts; anything else (older payloads, tests) is no condition."""
        return value if isinstance(value, dict) else {}

    @field_validator("observed_value", "threshold_value", mode="before")
    @classmethod
    def _number_as_text(cls, value: Any) -> str:
        return "" if value is None else str(value)

    @field_validator("started_at", "ended_at", mode="before")
    @classmethod
    def _epoch(cls, value: Any) -> datetime | None:
        if value in (None, "", 0):
            return None
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not (math.isfinite(value) and 0 < value <= LATEST_EPOCH_S):
                raise ValueError("must be seconds since the epoch (out of range)")
            return datetime.fromtimestamp(value, UTC)
        raise ValueError("must be seconds since the epoch")

    @field_validator("url", mode="before")
    @classmethod
    def _console_only(cls, url: Any) -> str:
        """Shown as "Open in Cloud Monitoring": only a link into the Cloud Console is one."""
        if not isinstance(url, str) or len(url) > LONG:
            return ""
        try:
            parts = urlsplit(url)
            exact_host = parts.hostname == CONSOLE_HOST and parts.port is None
        except ValueError:
            return ""
        plain = parts.username is None and parts.password is None
        return url if parts.scheme == "https" and exact_host and plain else ""

    @field_validator("documentation", mode="before")
    @classmethod
    def _documentation(cls, value: Any) -> str:
        """An object ``{"content": ...}`` in real alerts, a plain string in console tests."""
        if isinstance(value, dict):
            value = value.get("content", "")
        return "" if value is None else str(value)[:LONG]

    @property
    def service_name(self) -> str:
        return self.resource.labels.get("service_name", "")

    @property
    def revision_name(self) -> str:
        return self.resource.labels.get("revision_name", "")


class AlertPayload(_Loose):
    version: str = Field(default="1.2", max_length=16)
    incident: Incident


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is out of range")
    return number


def _without_nul(value: Any) -> Any:
    """PostgreSQL refuses NUL in text; no real alert has one."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def parse_alert(body: bytes) -> Incident:
    if len(body) > MAX_PAYLOAD_BYTES:
        raise AlertError(f"payload too large ({len(body)} bytes; the limit is {MAX_PAYLOAD_BYTES})")
    try:
        data = _without_nul(
            json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float)
        )
    except (ValueError, UnicodeDecodeError) as error:
        raise AlertError(f"payload is not JSON: {error}") from None
    except RecursionError:
        raise AlertError("payload is nested too deeply") from None
    if not isinstance(data, dict):
        raise AlertError("payload must be a JSON object with an 'incident'")
    try:
        return AlertPayload.model_validate(data).incident
    except RecursionError:
        raise AlertError("payload is nested too deeply") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AlertError(f"{where}: {first['msg']}") from None
