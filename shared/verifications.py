"""A decision on one report, verified or rejected by an operator (or withdrawn by its own
reporter): the value of `pantau.verifications.v1`, and the small index ingest keeps so it can
route a decision to the report's cell.

The idempotency key of a decision is (source, event_id, decision): the scoring worker keeps
each report's last applied decision in its cell, so the same decision applied twice changes
nothing, and a later different one moves the report's weight from what it is to what the new
decision says (verified: full weight, rejected: none).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field

from shared.strict import Strict

VERIFIED, REJECTED = "verified", "rejected"
Decision = Literal["verified", "rejected"]
REPORTER = "reporter"  # `by` of a report its own reporter withdrew (`/batal`): never a name


class VerificationEvent(Strict):
    """One decision. `region_code`, `category`, `occurred_at` and `verified` are the report's,
    copied from ingest's index, so scoring finds its cell and bucket and knows the weight it
    was counted with without reading the report again."""

    version: Literal[1] = 1
    source: str = Field(min_length=1, max_length=64)
    event_id: str = Field(min_length=1, max_length=128)
    decision: Decision
    region_code: str
    category: str
    occurred_at: str
    verified: bool = False
    by: str = Field(min_length=1, max_length=80)      # "operator:<id>" or "reporter"
    by_name: str = Field(min_length=1, max_length=120)  # shown in reasons and timelines
    note: str | None = Field(None, max_length=1000)
    decided_at: str

    def key(self) -> bytes:
        from shared.schemas import partition_key

        return partition_key(self.region_code).encode()


def index_key(source: str, event_id: str) -> str:
    """Redis key of an accepted report's routing facts (kept as long as its dedup claim)."""
    return f"pantau:report:{source}:{event_id}"


def decision_key(source: str, event_id: str) -> str:
    """Redis key of the last decision taken on a report, so a repeated request says so."""
    return f"pantau:decision:{source}:{event_id}"


def with_index(keys: list[str], values: list[str], reports: list[Any]) -> tuple[list[str], list[str]]:
    """Dedup claims to mark accepted, plus each report's index entry (ReportEvents): what a
    decision needs of the report, where it counted and with which weight. Written in the same
    Redis call as the accept marks, and kept as long."""
    return ([*keys, *(index_key(r.source, r.event_id) for r in reports)],
            [*values, *(orjson.dumps({"region_code": r.region_code, "category": r.category,
                                      "occurred_at": r.occurred_at, "verified": bool(r.verified)}).decode()
                        for r in reports)])


def reason(decision: str, by_name: str, event_id: str, lang: str = "id") -> str:
    """The reason a score update carries after a decision, e.g. "laporan X diverifikasi oleh Budi"."""
    if lang == "en":
        return f"report {event_id} {'verified' if decision == VERIFIED else 'rejected'} by {by_name}"
    return f"laporan {event_id} {'diverifikasi' if decision == VERIFIED else 'ditolak'} oleh {by_name}"


def decision_reasons(reasons: list[str]) -> list[str]:
    """The reasons that record a decision (notify writes them into the incident's timeline)."""
    marks = (" diverifikasi oleh ", " ditolak oleh ", " verified by ", " rejected by ")
    return [r for r in reasons if any(m in r for m in marks)]
