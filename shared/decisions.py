"""Taking an operator's decision on one report, wherever it is taken: ingest's API
(`POST /v1/reports/{source}/{event_id}/verify|reject`), a reporter's `/batal`, and notify's
console. One rule for all of them: the report must be in ingest's index (it was accepted
within the dedup window; the entry says where it counted), a decision the report already has
answers "unchanged" and sends nothing, and any other goes to `pantau.verifications.v1` with
the caller's own producer. Every service shares the one Redis that holds the index.

`reports_in` is the console's side: the incident knows its reports by event id only (a score
update's `report_ids`), so it finds each id's source by looking the id up in the index under
every configured source and keeping the entries that counted in the incident's region and
category: exactly the (source, event_id) pairs a decision can be routed to.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import orjson
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from shared import metrics, topics
from shared.problems import Refusal
from shared.regions import in_scope
from shared.times import rfc3339
from shared.verifications import VerificationEvent, decision_key, index_key

log = logging.getLogger("pantau.decisions")

ACCEPTED, UNCHANGED = "accepted", "unchanged"


def _text(v: Any) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


def _unavailable(what: str) -> Refusal:
    return Refusal(503, "unavailable", f"{what} unreachable; nothing was decided, retry", {"Retry-After": "5"})


async def decide(redis: Any, producer: Any, ttl_ms: int, source: str, event_id: str, decision: str, by: str,
                 by_name: str, note: str | None, now: float | None = None) -> str:
    """Look the report up and send the decision: ACCEPTED, or UNCHANGED when the report
    already has it. Raises Refusal 404 for an unknown report, 503 when Redis or the broker
    fails (nothing was sent, or it was sent and the caller may safely repeat it)."""
    try:
        raw, last = await redis.mget([index_key(source, event_id), decision_key(source, event_id)])
    except RedisError:
        raise _unavailable("state store") from None
    if raw is None:
        raise Refusal(404, "not_found", f"no accepted report {event_id!r} from source {source!r}")
    if _text(last) == decision:
        metrics.VERIFICATIONS.labels(decision, "unchanged").inc()
        return UNCHANGED
    event = VerificationEvent(source=source, event_id=event_id, decision=decision, by=by, by_name=by_name,
                              note=note, decided_at=rfc3339(time.time() if now is None else now),
                              **orjson.loads(raw))
    try:
        await producer.send_and_wait(topics.VERIFICATIONS_V1, event.model_dump_json().encode(), key=event.key())
    except KafkaError:
        raise _unavailable("broker") from None
    # The decision is on the topic: if this mark is lost, a repeat is sent again and scoring,
    # which keeps each report's last decision, ignores it.
    with contextlib.suppress(RedisError):
        await redis.set(decision_key(source, event_id), decision, px=ttl_ms)
    metrics.VERIFICATIONS.labels(decision, "sent").inc()
    log.info("decision %s on %s/%s by %s", decision, source, event_id, by)
    return ACCEPTED


@dataclass(frozen=True)
class ReportRef:
    """A report an incident counted, as the console shows it: where it came from, when it
    happened, the weight it arrived with and the last decision taken on it (None: none yet)."""

    source: str
    event_id: str
    occurred_at: str
    verified: bool
    decision: str | None


async def reports_in(redis: Any, sources: Sequence[str], region: str, category: str,
                     event_ids: Sequence[str]) -> list[ReportRef]:
    """The reports among `event_ids` (any source of `sources`) that counted in `region` (a
    kabupaten/kota or province, with everything under it) and `category`, in the order of
    `event_ids`. Two reads, whatever the number of ids and sources."""
    pairs = [(s, e) for e in event_ids for s in sources]
    if not pairs:
        return []
    entries = await redis.mget([index_key(s, e) for s, e in pairs])
    found = []
    for (s, e), raw in zip(pairs, entries):
        if raw is None:
            continue
        facts = orjson.loads(raw)
        if facts.get("category") == category and in_scope(str(facts.get("region_code", "")), [region]):
            found.append((s, e, facts))
    if not found:
        return []
    decisions = await redis.mget([decision_key(s, e) for s, e, _ in found])
    return [ReportRef(s, e, str(f.get("occurred_at", "")), bool(f.get("verified")), _text(d))
            for (s, e, f), d in zip(found, decisions)]


__all__ = ["ACCEPTED", "UNCHANGED", "ReportRef", "decide", "reports_in"]
