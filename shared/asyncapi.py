"""The AsyncAPI 3.0 document of Pantau's Kafka topics, generated from the pydantic models.

`TOPICS` is the one list of documented topics: a new topic needs its entry here (name from
`shared/topics.py`, key, value model, who writes it) and `pantau asyncapi` to rewrite
`docs/asyncapi.yaml`; a test fails while the committed file is not what this module makes.

The document describes Pantau as one application: it *receives* what publishers write to
`pantau.reports.raw` and *sends* everything else (its own internal reads between services
are not operations of the public interface).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared import topics
from shared.records import AcceptedReport, DeadLetter, DeliveryOutcome, LifecycleEvent
from shared.schemas import ReportEvent
from shared.scores import ScoreUpdate
from shared.verifications import VerificationEvent

KAFKA_BINDING = "0.5.0"


@dataclass(frozen=True)
class TopicDoc:
    """One topic of the public interface as the AsyncAPI document shows it."""

    address: str
    channel: str            # the document's name for it (camelCase)
    model: type[BaseModel]  # the message value (JSON)
    key: str                # what the Kafka key is
    action: Literal["send", "receive"]  # from Pantau's side
    summary: str
    headers: dict[str, str] = field(default_factory=dict)  # header name → what it carries


TOPICS: tuple[TopicDoc, ...] = (
    TopicDoc(topics.REPORTS_RAW, "reportsRaw", ReportEvent, "region_code of the report", "receive",
             "Reports written straight to Kafka by publishers that do not use HTTP (`pantau send --kafka` is the "
             "reference publisher). Each is validated: it reaches pantau.reports.v1, is counted as a duplicate, "
             "or lands in pantau.reports.dlq with its reason."),
    TopicDoc(topics.REPORTS_V1, "reportsV1", AcceptedReport,
             "kabupaten/kota code (province code for province-level reports)", "send",
             "Validated reports, each exactly once, from the HTTP gateway and the raw-topic validator."),
    TopicDoc(topics.REPORTS_DLQ, "reportsDlq", DeadLetter, "the raw message's key, as received", "send",
             "Raw messages that are not valid reports, with every reason."),
    TopicDoc(topics.SCORES_V1, "scoresV1", ScoreUpdate, "region code", "send",
             "A region and category's level, written when the level or alarm changes, with reasons in words.",
             {topics.RECEIVED_AT_HEADER: "earliest received_at (RFC 3339) of the reports behind the update"}),
    TopicDoc(topics.ESCALATIONS_V1, "escalationsV1", LifecycleEvent, "incident_id", "send",
             "Incident lifecycle: triggered, escalated, acknowledged, resolved, reminder. The same body is "
             "every webhook's."),
    TopicDoc(topics.NOTIFICATIONS_V1, "notificationsV1", DeliveryOutcome, "incident_id", "send",
             "The outcome of every delivery attempt on every channel."),
    TopicDoc(topics.VERIFICATIONS_V1, "verificationsV1", VerificationEvent,
             "the report's partition key (kabupaten/kota code), so the decision reaches the cell that counted it",
             "send",
             "An operator's decision on one report (verified or rejected; or withdrawn by its own reporter). "
             "Scoring moves the report's weight in its cell; the same decision twice changes nothing."),
)


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document as a dict (deterministic: the same models give the same dict)."""
    _, defs = models_json_schema([(t.model, "validation") for t in TOPICS],
                                 ref_template="#/components/schemas/{model}")
    schemas = {name: _clean(s) for name, s in sorted(defs.get("$defs", {}).items())}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for t in TOPICS:
        name = t.model.__name__
        msg: dict[str, Any] = {
            "name": name, "title": name, "summary": (t.model.__doc__ or name).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "bindings": {"kafka": {"key": {"type": "string", "description": t.key}, "bindingVersion": KAFKA_BINDING}},
        }
        if t.headers:
            msg["headers"] = {"type": "object", "properties": {
                h: {"type": "string", "description": d} for h, d in t.headers.items()}}
        messages[name] = msg
        channels[t.channel] = {
            "address": t.address, "description": t.summary,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"kafka": {"topic": t.address, "bindingVersion": KAFKA_BINDING}},
        }
        verb = "receive" if t.action == "receive" else "send"
        operations[f"{verb}{t.channel[0].upper()}{t.channel[1:]}"] = {
            "action": t.action, "channel": {"$ref": f"#/channels/{t.channel}"},
            "summary": f"Pantau {'reads' if t.action == 'receive' else 'writes'} {t.address}",
            "messages": [{"$ref": f"#/channels/{t.channel}/messages/{name}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Pantau Kafka topics",
            "version": "1",
            "description": "Contract v1 of Pantau's topics (alert escalation for regional early warning of social "
                           "conflict in Indonesia). Generated from the pydantic models by `pantau asyncapi`; do not "
                           "edit by hand.",
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "compose": {"host": "kafka:9092", "protocol": "kafka",
                        "description": "Apache Kafka (KRaft) of docker-compose.yml, as the services reach it"},
            "embedded": {"host": "127.0.0.1:19092", "protocol": "kafka",
                         "description": "the embedded broker of `pantau up` / `make run`"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _clean(schema: Any) -> Any:
    """Pydantic's JSON Schema without its auto-generated `title`s (noise beside the model names)."""
    if isinstance(schema, dict):
        return {k: _clean(v) for k, v in schema.items()
                if not (k == "title" and isinstance(v, str) and "properties" not in schema)}
    if isinstance(schema, list):
        return [_clean(v) for v in schema]
    return schema


def render() -> str:
    """The document as YAML, as `docs/asyncapi.yaml` holds it."""
    return "# Generated by `pantau asyncapi` from shared/asyncapi.py; do not edit by hand.\n" + yaml.safe_dump(
        document(), sort_keys=False, allow_unicode=True, width=100)


__all__ = ["TOPICS", "TopicDoc", "document", "render"]
