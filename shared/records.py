"""The records on Pantau's topics that the services write as plain JSON, as pydantic models, so
the AsyncAPI document (`shared/asyncapi.py`) can describe every topic from a model. The
report and score models live beside their validation (`shared/schemas.py`,
`shared/scores.py`); these describe what ingest and notify write (contract: Kafka topics,
Incident lifecycle)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.categories import Category
from shared.channels_config import CHANNEL_TYPES
from shared.levels import Level
from shared.problems import FieldError
from shared.schemas import ReportEvent

_TIME = {"format": "date-time"}


class AcceptedReport(ReportEvent):
    """A validated report on `pantau.reports.v1`: the report as published, plus when and under
    which id it entered Pantau."""

    received_at: str = Field(json_schema_extra=_TIME, description="when Pantau accepted it (RFC 3339, UTC)")
    ingest_id: str = Field(description="unique per accepted report; `raw-<partition>-<offset>` for reports "
                                       "that came over pantau.reports.raw")


class DeadLetter(BaseModel):
    """A message from `pantau.reports.raw` that is not a valid report, kept with its reason."""

    model_config = ConfigDict(extra="forbid")

    reason: Literal["invalid_json", "unknown_region", "invalid"]
    errors: list[FieldError] = Field(description="every bad field, as the HTTP API's 422 names them")
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    received_at: str = Field(json_schema_extra=_TIME)
    payload_b64: str = Field(description="the message value exactly as received, base64")
    ingest_id: str = Field(description="`raw-<partition>-<offset>`")


class LifecycleEvent(BaseModel):
    """One incident lifecycle event on `pantau.escalations.v1`; also the body of every webhook."""

    model_config = ConfigDict(extra="forbid")

    version: Literal["1"]
    incident_id: str
    status: Literal["triggered", "escalated", "acknowledged", "resolved", "reminder"]
    level: Level
    region_code: str
    region_name: str
    category: Category
    step: int = Field(ge=0, description="the escalation step this event belongs to")
    summary: str
    reasons: list[str]
    report_ids: list[str]
    ack_url: str = Field(description="one-tap acknowledgement link (empty on the topic when no link is made)")
    opened_at: str = Field(json_schema_extra=_TIME)
    updated_at: str = Field(json_schema_extra=_TIME)


class DeliveryOutcome(BaseModel):
    """One delivery attempt's outcome on `pantau.notifications.v1`."""

    model_config = ConfigDict(extra="forbid")

    delivery_id: str = Field(description="the same on every attempt of one delivery (X-Pantau-Delivery)")
    incident_id: str
    event_key: str = Field(description="the lifecycle event (firing) the delivery carries")
    channel: str = Field(description="the channel's id in the config")
    channel_type: Literal[CHANNEL_TYPES]  # type: ignore[valid-type]
    contact: str | None = Field(description="the contact's id; null for a channel with a fixed destination")
    attempt: int = Field(ge=0)
    outcome: Literal["delivered", "retry", "failed", "dead", "interrupted"]
    reason: Literal["ok", "client_error", "server_error", "rate_limited", "auth_error", "timeout",
                    "connection_error"]
    at: str = Field(json_schema_extra=_TIME)


__all__ = ["AcceptedReport", "DeadLetter", "DeliveryOutcome", "LifecycleEvent"]
