"""Cloud Monitoring's webhook payload (version 1.2), parsed strictly and defensively.

The endpoint is reachable from the internet: the payload is size-limited, every string is
length-limited, and anything unexpected is a clear 400, never a crash and never a message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

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


class AlertMetric(_Loose):
    type: str = Field(default="", max_length=SHORT)
    display_name: str = Field(default="", max_length=SHORT, alias="displayName")
    labels: Labels = {}


class Incident(_Loose):
    incident_id: str = Field(min_length=1, max_length=SHORT)
    state: str
    policy_name: str = Field(default="", max_length=SHORT)
    condition_name: str = Field(default="", max_length=SHORT)
    resource: AlertResource = AlertResource()
    metric: AlertMetric = AlertMetric()
    observed_value: str = Field(default="", max_length=64)
    threshold_value: str = Field(default="", max_length=64)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    url: str = Field(default="", max_length=LONG)
    summary: str = Field(default="", max_length=LONG)
    documentation: str = ""

    @field_validator("state")
    @classmethod
    def _state(cls, state: str) -> str:
        state = state.strip().lower()
        if state not in ("open", "closed"):
            raise ValueError("must be 'open' or 'closed'")
        return state

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
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        raise ValueError("must be seconds since the epoch")

    @field_validator("url")
    @classmethod
    def _https_only(cls, url: str) -> str:
        return url if url.startswith("https://") else ""

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


def parse_alert(body: bytes) -> Incident:
    if len(body) > MAX_PAYLOAD_BYTES:
        raise AlertError(f"payload too large ({len(body)} bytes; the limit is {MAX_PAYLOAD_BYTES})")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise AlertError(f"payload is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise AlertError("payload must be a JSON object with an 'incident'")
    try:
        return AlertPayload.model_validate(data).incident
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AlertError(f"{where}: {first['msg']}") from None
