"""Taking validated reports in: claim each (source, event_id), produce the new ones with
acks=all, then mark them accepted — so that each report reaches `pantau.reports.v1` once.

A produce can fail in two ways, and they are told apart:

- *definite*: the record never left this process (the producer refused it: no metadata for
  the topic, a full buffer). The claim is released and the answer is 503 "nothing was
  accepted".
- *ambiguous*: the record was handed to the producer and then no acknowledgement came (a
  timeout: the broker may have been stopped with the request in its socket buffer and append
  it when it runs again), or the broker acknowledged but Redis failed before the claim was
  marked accepted, or this process died in between. The claim is kept, carrying the ingest_id,
  the partition and the time of the claim (state.py), and the answer is 503 "may have been
  accepted; retry". aiokafka does not say whether a failed batch was ever written to a socket,
  so every failure after `send()` returned counts as ambiguous.

The publisher's retry (same source and event_id) meets that claim and *resolves* it: it takes
the claim over with a compare-and-swap (two racing retries: one wins, the other waits for its
outcome), reads that partition of reports.v1 from the claim's time up to the fetch high
watermark (scan.py; the validator's recovery reads the same way), and looks for the ingest_id.
Found: the claim is marked accepted. Not found: the report is produced again with the *same*
ingest_id and partition, so even a copy that turns up later carries the same id.

Either way the retry answers 202 `accepted`. The rule is: the request that marks the claim
accepted answers `accepted`, every later one `duplicate` — so a publisher gets `accepted` for
each report exactly once, whether or not its first, ambiguous attempt reached the broker
(which it cannot know). A request whose publisher gave up waiting still marks its own claim and
answers 202 to nobody; the retry is then a `duplicate` (tests/ingest/test_http_faults.py).
For the same reason a batch that fails anywhere marks none of its reports accepted: the ones
that may be on the topic become uncertain and are resolved by the retry.

Redis is ambiguous too: a mark whose answer timed out may have been applied (Redis stopped
with the command in its socket buffer). Then the claim is accepted although its request
answered 503, and the retry answers `duplicate`; the report is still on the topic once.

Not covered: a claim that Redis itself lost (a crash inside `appendfsync everysec`), and a
stale produce request that the broker appends more than scan.SETTLE_S after it answered the
resolving request again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from redis.exceptions import RedisError

from shared import metrics, topics
from shared.schemas import ReportEvent, enriched, partition_key
from shared.times import rfc3339
from shared.verifications import with_index
from services.ingest.scan import Finder
from services.ingest.state import ACCEPTED, Attempt, IntakeState, dedup_key, redis_full

log = logging.getLogger("pantau.ingest")


class Unavailable(Exception):
    """The broker or Redis could not be reached; the caller answers 503. `maybe_accepted`
    says whether a report of this call may have reached the topic all the same."""

    def __init__(self, message: str, maybe_accepted: bool):
        super().__init__(message)
        self.maybe_accepted = maybe_accepted


def state_unavailable(e: RedisError, maybe_accepted: bool) -> Unavailable:
    """Unavailable, saying whether Redis is gone or full. Full (maxmemory with noeviction)
    needs an operator: retries succeed only once memory is raised or keys expire."""
    if redis_full(e):
        return Unavailable("state store full: Redis has reached its maxmemory and refuses writes", maybe_accepted)
    return Unavailable("state store unreachable", maybe_accepted)


class RateLimited(Exception):
    """Over the source's rate limit: answered 429 with Retry-After."""

    def __init__(self, retry_after_s: int):
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class Outcome:
    """What became of one report taken in: accepted now, or a duplicate of one accepted before."""

    event_id: str
    status: str  # accepted | duplicate


@dataclass(slots=True)
class _Held:
    """A claim this request holds, and the value it holds it with."""

    index: int
    key: str
    attempt: Attempt
    value: str
    resolving: bool  # taken over from an earlier, ambiguous attempt


class Intake:
    """Accepts reports exactly once per (source, event_id), whichever path they came by."""

    def __init__(self, producer: AIOKafkaProducer, state: IntakeState, bootstrap: str, send_timeout_s: float,
                 lease_s: float, wait_for_peer_s: float):
        self.producer = producer
        self.state = state
        self.bootstrap = bootstrap
        self.send_timeout_s = send_timeout_s
        self.lease_ms = int(lease_s * 1000)
        self.wait_for_peer_s = wait_for_peer_s
        self._partitioner = DefaultPartitioner()
        self._finder: Finder | None = None

    async def start(self) -> None:
        """Start the reader that resolves uncertain claims (outside any consumer group)."""
        scanner = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                   request_timeout_ms=int(self.send_timeout_s * 1000) + 1000)
        await scanner.start()
        self._finder = Finder(scanner, self.send_timeout_s, topics.REPORTS_V1)

    async def close(self) -> None:
        if self._finder is not None:
            await self._finder.consumer.stop()

    async def take(self, source: str, rate_per_minute: int | None, reports: list[ReportEvent]) -> list[Outcome]:
        """Outcomes in input order. Raises RateLimited or Unavailable for the whole call."""
        now_ms = int(time.time() * 1000)
        keys = [dedup_key(r.source, r.event_id) for r in reports]
        try:
            # Chosen before claiming, as the producer would, so the claim can say where to look.
            parts = await self._partitions(reports)
        except KafkaError as e:
            raise Unavailable("broker unreachable", maybe_accepted=False) from e
        attempts = [Attempt(uuid.uuid4().hex, p, now_ms) for p in parts]
        values = [a.pending(now_ms + self.lease_ms) for a in attempts]
        try:
            claim = await self.state.claim(source, rate_per_minute, keys, values, now_ms, self.state.dedup_ttl_ms)
        except RedisError as e:
            raise state_unavailable(e, maybe_accepted=False) from e
        if claim.limited_ms:
            raise RateLimited(max(1, -(-claim.limited_ms // 1000)))

        outcomes: list[Outcome | None] = [None] * len(reports)
        held: list[_Held] = []
        for i, existing in enumerate(claim.existing):
            if existing == "":
                held.append(_Held(i, keys[i], attempts[i], values[i], resolving=False))
            elif existing.startswith(ACCEPTED):
                outcomes[i] = Outcome(reports[i].event_id, "duplicate")
            elif (h := await self._take_over(i, keys[i], existing, now_ms)) is not None:
                held.append(h)
        for h in await self._write(reports, held):
            outcomes[h.index] = Outcome(reports[h.index].event_id, "accepted")

        # Claimed by a request still in flight (or an earlier copy in this same batch):
        # wait for its outcome so that exactly one of them answers "accepted".
        for i, o in enumerate(outcomes):
            if o is None:
                outcomes[i] = await self._await_peer(source, reports[i])
        return outcomes  # type: ignore[return-value]

    async def _partitions(self, reports: list[ReportEvent]) -> list[int]:
        # The topic's partitions looked up once per call: awaited per report, the lookup was a
        # tenth of a 500-report batch's CPU.
        parts = sorted(await self.producer.partitions_for(topics.REPORTS_V1))
        return [self._partitioner(partition_key(r.region_code).encode(), parts, parts) for r in reports]

    async def _take_over(self, index: int, key: str, existing: str, now_ms: int) -> _Held | None:
        """Hold a resolvable claim (uncertain, or pending past its lease) for this request;
        None when it is not resolvable or another request took it first."""
        attempt = Attempt.resolvable(existing, now_ms)
        if attempt is None:
            return None
        value = attempt.pending(now_ms + self.lease_ms)
        try:
            if not await self.state.swap(key, existing, value):
                return None
        except RedisError as e:
            raise state_unavailable(e, maybe_accepted=True) from e
        return _Held(index, key, attempt, value, resolving=True)

    async def _write(self, reports: list[ReportEvent], held: list[_Held]) -> list[_Held]:
        """Get every held report onto reports.v1 exactly once and mark it accepted. Returns
        the claims this request accepted; a claim lost while resolving it is left to its new
        holder (the caller waits for that one's outcome)."""
        if not held:
            return []
        resolving = [h for h in held if h.resolving]
        try:
            found = await self._find(resolving)
        except (KafkaError, OSError, asyncio.TimeoutError) as e:
            await self._settle(uncertain=resolving, release=[h for h in held if not h.resolving])
            raise Unavailable("broker unreachable", maybe_accepted=True) from e
        try:
            # The search may have taken most of the lease: renew it before writing, and leave
            # a claim that another request took over meanwhile (its lease had run out) to that one.
            kept = []
            for h in held:
                if h.resolving:
                    renewed = h.attempt.pending(int(time.time() * 1000) + self.lease_ms)
                    if not await self.state.swap(h.key, h.value, renewed):
                        continue
                    h.value = renewed
                kept.append(h)
        except RedisError as e:
            raise state_unavailable(e, maybe_accepted=True) from e
        held = kept
        if resolving:
            log.info("resolved %d uncertain claims: %d already on %s", len(resolving), len(found), topics.REPORTS_V1)
        to_send = [h for h in held if h.attempt.ingest_id not in found]

        t0 = time.perf_counter()
        futs = []
        refused: Exception | None = None
        for h in to_send:
            r, a = reports[h.index], h.attempt
            try:
                # A copy of an earlier attempt keeps its ingest_id, partition and received_at:
                # it is the same acceptance, written again.
                futs.append(await self.producer.send(
                    topics.REPORTS_V1, enriched(r, rfc3339(a.claimed_ms / 1000), a.ingest_id),
                    key=partition_key(r.region_code).encode(), partition=a.partition))
            except KafkaError as e:
                refused = e  # never handed to the producer: this one and the rest are not sent
                break
        acks = await asyncio.gather(*futs, return_exceptions=True)
        if refused is not None or any(isinstance(x, BaseException) for x in acks):
            unsent = {h.index for h in to_send[len(futs):]}
            # Whatever was handed to the producer may be on the topic, and so may earlier
            # attempts: uncertain. Only new claims whose record never left may be freed.
            await self._settle(uncertain=[h for h in held if h.resolving or h.index not in unsent],
                               release=[h for h in held if not h.resolving and h.index in unsent])
            raise Unavailable("broker did not acknowledge", maybe_accepted=True) from (refused or next(
                x for x in acks if isinstance(x, BaseException)))
        metrics.BROKER_ACK_SECONDS.observe(time.perf_counter() - t0)
        try:
            await self.state.accept(*with_index([h.key for h in held], [h.attempt.accepted() for h in held],
                                                [reports[h.index] for h in held]))
        except RedisError as e:
            # The broker has them; the claims stay pending and become resolvable when their
            # lease runs out, and the retry then finds them on the topic.
            raise state_unavailable(e, maybe_accepted=True) from e
        return held

    async def _find(self, resolving: list[_Held]) -> set[str]:
        """The ingest ids of these earlier attempts that are on reports.v1."""
        if not resolving:
            return set()
        margin_ms = int(self.send_timeout_s * 1000)  # clocks of gateways that wrote copies may differ
        wanted: dict[int, tuple[int, set[str]]] = {}
        for h in resolving:
            since, ids = wanted.get(h.attempt.partition, (h.attempt.claimed_ms, set()))
            ids.add(h.attempt.ingest_id)
            wanted[h.attempt.partition] = (min(since, h.attempt.claimed_ms - margin_ms), ids)
        assert self._finder is not None, "Intake.start() was not called"
        return await self._finder.find(wanted)

    async def _settle(self, uncertain: list[_Held], release: list[_Held]) -> None:
        """After a failure: mark claims that may have a copy on the topic uncertain (resolvable
        by the next request at once) and free those that certainly have none. If Redis fails
        here too, the leases run out and the claims become resolvable all the same."""
        try:
            for h in uncertain:
                await self.state.swap(h.key, h.value, h.attempt.uncertain())
            for h in release:
                await self.state.swap(h.key, h.value, "")
        except RedisError:
            pass

    async def _await_peer(self, source: str, report: ReportEvent) -> Outcome:
        key = dedup_key(report.source, report.event_id)
        deadline = time.monotonic() + self.wait_for_peer_s
        while time.monotonic() < deadline:
            try:
                v = await self.state.get(key)
            except RedisError as e:
                raise state_unavailable(e, maybe_accepted=True) from e
            if v is not None and v.startswith(ACCEPTED):
                return Outcome(report.event_id, "duplicate")
            if v is None or Attempt.resolvable(v, int(time.time() * 1000)) is not None:
                # The other attempt failed and released its claim, or left it to be resolved:
                # try to take it over (not charged to the rate limit again).
                return (await self.take(source, None, [report]))[0]
            await asyncio.sleep(0.01)
        raise Unavailable("an identical report is still being accepted", maybe_accepted=True)
