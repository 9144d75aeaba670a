"""Taking validated reports in: claim each (source, event_id), produce the new ones with
acks=all, then mark them accepted — or release them so that nothing is half-accepted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from shared import metrics, topics
from shared.schemas import ReportEvent, enriched, partition_key, rfc3339
from services.ingest.state import ACCEPTED, PENDING, IntakeState, dedup_key


class Unavailable(Exception):
    """The broker or Redis could not be reached; the caller answers 503."""


class RateLimited(Exception):
    def __init__(self, retry_after_s: int):
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class Outcome:
    event_id: str
    status: str  # accepted | duplicate


class Intake:
    """Accepts reports exactly once per (source, event_id), whichever path they came by."""

    def __init__(self, producer: AIOKafkaProducer, state: IntakeState, wait_for_peer_s: float):
        self.producer = producer
        self.state = state
        self.wait_for_peer_s = wait_for_peer_s

    async def take(self, source: str, rate_per_minute: int | None, reports: list[ReportEvent]) -> list[Outcome]:
        """Outcomes in input order. Raises RateLimited or Unavailable for the whole call."""
        now = time.time()
        keys = [dedup_key(r.source, r.event_id) for r in reports]
        ids = [uuid.uuid4().hex for _ in reports]
        values = [PENDING + i for i in ids]
        try:
            claim = await self.state.claim(source, rate_per_minute, keys, values, int(now * 1000))
        except RedisError as e:
            raise Unavailable("state store unreachable") from e
        if claim.limited_ms:
            raise RateLimited(max(1, -(-claim.limited_ms // 1000)))

        outcomes: list[Outcome | None] = [None] * len(reports)
        mine: list[int] = []
        for i, existing in enumerate(claim.existing):
            if existing == "":
                mine.append(i)
            elif existing.startswith(ACCEPTED):
                outcomes[i] = Outcome(reports[i].event_id, "duplicate")
        try:
            await self._produce([reports[i] for i in mine], [ids[i] for i in mine], now)
        except Unavailable:
            await self._release_quietly([keys[i] for i in mine], [values[i] for i in mine])
            raise
        try:
            await self.state.accept([keys[i] for i in mine], [ACCEPTED + ids[i] for i in mine])
        except RedisError as e:
            # The broker has the reports; a retry will re-produce them with a fresh ingest_id
            # and downstream drops the repeat by (source, event_id). Tell the publisher to retry.
            raise Unavailable("state store unreachable") from e
        for i in mine:
            outcomes[i] = Outcome(reports[i].event_id, "accepted")

        # Claimed by a request still in flight (or an earlier copy in this same batch):
        # wait for its outcome so that exactly one of them answers "accepted".
        for i, o in enumerate(outcomes):
            if o is None:
                outcomes[i] = await self._await_peer(source, rate_per_minute, reports[i])
        return outcomes  # type: ignore[return-value]

    async def _produce(self, reports: list[ReportEvent], ids: list[str], now: float) -> None:
        if not reports:
            return
        t0 = time.perf_counter()
        received_at = rfc3339(now)
        try:
            futs = [
                await self.producer.send(
                    topics.REPORTS_V1, enriched(r, received_at, i), key=partition_key(r.region_code).encode()
                )
                for r, i in zip(reports, ids)
            ]
            await asyncio.gather(*futs)
        except KafkaError as e:
            raise Unavailable("broker unreachable") from e
        metrics.BROKER_ACK_SECONDS.observe(time.perf_counter() - t0)

    async def _await_peer(self, source: str, rate: int | None, report: ReportEvent) -> Outcome:
        key = dedup_key(report.source, report.event_id)
        deadline = time.monotonic() + self.wait_for_peer_s
        while time.monotonic() < deadline:
            try:
                v = await self.state.get(key)
            except RedisError as e:
                raise Unavailable("state store unreachable") from e
            if v is not None and v.startswith(ACCEPTED):
                return Outcome(report.event_id, "duplicate")
            if v is None:
                # The other attempt failed and released its claim: try to take it over.
                return (await self.take(source, None, [report]))[0]
            await asyncio.sleep(0.01)
        raise Unavailable("an identical report is still being accepted")

    async def _release_quietly(self, keys: list[str], values: list[str]) -> None:
        try:
            await self.state.release(keys, values)
        except RedisError:
            pass  # pending claims expire on their own after PENDING_TTL_MS
