"""An incident: one open escalation per (kabupaten/kota or province, category), as a record.

`Incident` is what Redis stores and the API shows; `Change` is what a transition
(services/notify/transitions.py) returns for the store (services/notify/store.py) to save;
`lifecycle_event` is the contract's `pantau.escalations.v1` body of one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from shared.times import rfc3339
from services.notify.messages import category_name
from services.notify.policy import Escalation

Status = Literal["triggered", "escalated", "acknowledged", "resolved"]
OPEN_STATUSES = ("triggered", "escalated")
MAX_REPORT_IDS = 500
MAX_REASONS = 20


class Conflict(Exception):
    """The action does not fit the incident's state (e.g. acknowledging a resolved one)."""


# --- data ---------------------------------------------------------------------------------------
class Broadcast(BaseModel):
    """A notice to everyone paged so far (acknowledged / resolved), not yet handed over."""

    status: Literal["acknowledged", "resolved"]
    key: str
    at: float


class Incident(BaseModel):
    """One incident as stored and shown: where, what, how bad, its escalation and who took it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    kind: Literal["score", "source_silent"] = "score"
    key: str
    region_code: str
    region_name: str
    category: str
    source: str | None = None
    level: str
    status: Status = "triggered"
    summary: str = ""
    reasons: list[str] = Field(default_factory=list)
    report_ids: list[str] = Field(default_factory=list)
    opened_at: float
    updated_at: float
    triggered_at: float  # start of the current wait for an acknowledgement (open or last rise)
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolution: Literal["manual", "auto"] | None = None
    note: str | None = None
    escalation: Escalation = Escalation()
    paged: list[tuple[str, str]] = Field(default_factory=list)  # (contact, channel), in paging order
    broadcasts: list[Broadcast] = Field(default_factory=list)
    last_alert_bucket: float | None = None
    quiet_buckets: list[float] = Field(default_factory=list)
    acks: int = 0
    rises: int = 0
    # The province incident holding this one's pages back (services.notify.inhibit), if any.
    inhibited_by: str | None = None
    version: int = 0

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def wakeup(self) -> float | None:
        """When the scheduler must next look at this incident."""
        times = [b.at for b in self.broadcasts]
        if self.escalation.due is not None and self.status in OPEN_STATUSES:
            times.append(self.escalation.due)
        return min(times) if times else None

    def view(self) -> dict[str, Any]:
        """The API's picture of the incident (times as RFC 3339)."""
        d = self.model_dump(exclude={"version", "broadcasts", "quiet_buckets", "last_alert_bucket", "key"})
        for k in ("opened_at", "updated_at", "triggered_at", "acknowledged_at", "resolved_at"):
            d[k] = rfc3339(d[k]) if d[k] is not None else None
        esc = self.escalation
        d["escalation"] = {"policy": esc.policy_id, "step": esc.last_step, "next_step": esc.step if esc.due else None,
                           "next_at": rfc3339(esc.due) if esc.due is not None and self.is_open else None,
                           "cycle": esc.cycle}
        d["paged"] = [{"contact": c, "channel": ch} for c, ch in self.paged]
        return d


def incident_key(region: str, category: str) -> str:
    return f"{region}|{category}"


def source_key(source: str) -> str:
    return f"source|{source}"


@dataclass
class Change:
    """A transition's result: the new state, what to write to the timeline, lifecycle
    events to publish as (status, step), and what the metrics count."""

    incident: Incident
    timeline: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, int]] = field(default_factory=list)
    opened: bool = False
    acknowledged: bool = False
    resolved: str | None = None  # "manual" | "auto"
    steps_fired: int = 0
    timer: float | None | Literal["auto"] = "auto"  # "auto": incident.wakeup()


def _entry(now: float, kind: str, **kw: Any) -> dict[str, Any]:
    return {"at": rfc3339(now), "kind": kind, **{k: v for k, v in kw.items() if v is not None}}


def summarize(category: str, region_name: str, level: str, language: str = "id") -> str:
    cat = category_name(category, "en" if language == "en" else "id")
    if language == "en":
        return f"{cat} in {region_name}: level {level.upper()}"
    return f"{cat} di {region_name}: level {level.upper()}"


def _merge_ids(old: list[str], new: Sequence[str]) -> list[str]:
    seen = set(old)
    out = list(old)
    for r in new:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out[-MAX_REPORT_IDS:]


def lifecycle_event(inc: Incident, status: str, step: int, ack_url: str) -> dict[str, Any]:
    """The contract body of `pantau.escalations.v1` and of webhooks."""
    return {
        "version": "1", "incident_id": inc.id, "status": status, "level": inc.level, "region_code": inc.region_code,
        "region_name": inc.region_name, "category": inc.category, "step": step, "summary": inc.summary,
        "reasons": list(inc.reasons), "report_ids": list(inc.report_ids), "ack_url": ack_url,
        "opened_at": rfc3339(inc.opened_at), "updated_at": rfc3339(inc.updated_at),
    }


def new_incident_id(region: str, category: str, now: float) -> str:
    """Readable and unique: `65.71-election_dispute-20241127T061500-3f9a`."""
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{region}-{category}-{stamp}-{uuid.uuid4().hex[:4]}"
