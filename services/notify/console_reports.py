"""The reports behind the console's incidents, and the operator's decision on one of them.

Notify does not call ingest: it takes the decision through shared/decisions.py, against the
Redis index ingest writes and with its own producer, so the decision reaches scoring on
`pantau.verifications.v1` exactly as one taken through ingest's API does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from shared import decisions
from shared.decisions import ReportRef
from services.notify.incident import Incident

MAX_REPORTS = 10  # per incident shown, newest first: the console is a phone screen


@dataclass(frozen=True)
class ReportDesk:
    """What the console needs to decide on reports: the producer for
    `pantau.verifications.v1`, the configured source ids (where to look an event id up) and
    how long a decision mark is kept (ingest's dedup window)."""

    producer: Any
    sources: Sequence[str]
    ttl_ms: int


async def reports_of(r: Any, desk: ReportDesk | None, incidents: Sequence[Incident]) -> dict[str, list[ReportRef]]:
    """Per incident id, its newest reports that a decision can still reach."""
    if desk is None:
        return {}
    out = {}
    for inc in incidents:
        if inc.kind != "score" or not inc.report_ids:
            continue
        ids = list(reversed(inc.report_ids[-MAX_REPORTS:]))
        out[inc.id] = await decisions.reports_in(r, desk.sources, inc.region_code, inc.category, ids)
    return out


async def take(r: Any, desk: ReportDesk, source: str, event_id: str, decision: str, operator_id: str,
               operator_name: str, note: str | None) -> str:
    """The logged-in operator's decision: "accepted" or "unchanged" (Refusal 404/503 as the API)."""
    return await decisions.decide(r, desk.producer, desk.ttl_ms, source, event_id, decision,
                                  f"operator:{operator_id}", operator_name, note)


__all__ = ["MAX_REPORTS", "ReportDesk", "reports_of", "take"]
