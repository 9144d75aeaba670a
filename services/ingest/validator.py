"""The raw-topic validator: every message on `pantau.reports.raw` ends on `pantau.reports.v1`,
as a counted duplicate, or on `pantau.reports.dlq` with its reason — exactly once, even when
the validator is killed mid-batch.

Per batch: validate → claim (source, event_id) in Redis → produce and await acks → mark
accepted → commit offsets and a checkpoint. Output written for raw message (p, o) carries
the deterministic id `raw-p-o`, so after a crash the next owner of partition p scans the
output topics from the checkpoint and skips whatever the dead process already wrote.

Some 400 lines on purpose: the batch steps, the commit with its checkpoint and the recovery
scan are one exactly-once protocol, and each part is only right beside the others.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import signal
import time
from collections import Counter
from typing import Awaitable, Callable, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from shared import heap, metrics, redis_client, topics
from shared.config import Config
from shared.kafka import CONSUMER_DEFAULTS, producer_settings, report_lag
from shared.record_batches import send_keyed
from shared.schemas import ReportEvent, enriched, partition_key, validate_json
from shared.times import rfc3339
from redis.exceptions import ConnectionError as RedisConnectionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.ingest.scan import Finder, ingest_id, read_to_high_watermark
from shared.verifications import with_index
from services.ingest.state import (ACCEPTED, PENDING, PENDING_TTL_MS, Attempt, IntakeState, claim_lease_s, dedup_key,
                                  redis_full)
from shared.retry import backoff_s

log = logging.getLogger("pantau.validator")

CHECKPOINT = "pantau:validator:checkpoint:{}"
OUTPUT_TOPICS = (topics.REPORTS_V1, topics.REPORTS_DLQ)
T = TypeVar("T")


def origin_id(partition: int, offset: int) -> str:
    return f"raw-{partition}-{offset}"


def dlq_reason(errors: list[dict[str, str]]) -> str:
    """One word for the DLQ record and the metric label; `errors` keeps the details."""
    if any(e["field"] == "(body)" and e["message"].startswith("invalid JSON") for e in errors):
        return "invalid_json"
    if errors and all(e["field"] == "region_code" and e["message"].startswith("unknown region") for e in errors):
        return "unknown_region"
    return "invalid"


def dlq_record(msg: ConsumerRecord, reason: str, errors: list[dict[str, str]], now: float) -> bytes:
    return orjson.dumps({
        "reason": reason,
        "errors": errors,
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "received_at": rfc3339(now),
        "payload_b64": base64.b64encode(msg.value or b"").decode(),
        "ingest_id": origin_id(msg.partition, msg.offset),
    })


def unseen(msgs: list[ConsumerRecord], after: dict[int, int]) -> list[ConsumerRecord]:
    """The messages past the last offset already processed in their partition (`after`:
    partition → next offset, updated here); a repeat is dropped with a warning.

    On the durable broker one fetch can hand an offset twice: while the store merges a run of
    batches (cli/s3merge.py), a response can hold the merged batch and a source batch it
    covers, and aiokafka, which takes its next offset from the end of each batch, skipped or
    not, yields the source's record again. A power-cut run wrote one raw message's DLQ record
    twice that way, in one batch, right after the restart."""
    out = []
    for m in msgs:
        nxt = after.get(m.partition)
        if nxt is not None and m.offset < nxt:
            log.warning("%s[%d] offset %d came again after offset %d; processed once", m.topic, m.partition,
                        m.offset, nxt - 1)
            continue
        after[m.partition] = m.offset + 1
        out.append(m)
    return out


class Validator:
    """Consumes `pantau.reports.raw` in batches and routes each message."""

    def __init__(self, config: Config):
        self.config = config
        self.known_sources = frozenset(s.id for s in config.sources)
        self.max_bytes = config.ingest.max_body_bytes
        self.lease_s = claim_lease_s(config.ingest.send_timeout_s)
        self.lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        # For each output partition, an offset no later than anything we produce from now on.
        self.low_water: dict[tuple[str, int], int] = {}
        # Origins ("raw-p-o") a previous owner already wrote, found by the recovery scan.
        self.already_written: set[str] = set()
        # Raw partition -> (highest offset a previous owner wrote output for, where the scan
        # that found it started). Until our commits pass that offset, this output is still
        # ahead of the committed position, so checkpoints must keep pointing before it.
        self.inherited: dict[int, tuple[int, dict[str, int]]] = {}
        self.processed = 0
        # Raw partitions whose recovery scan has run for the current assignment, and a count
        # of rebalances, so that no batch is processed before its scan or after a rebalance.
        self.recovered: set[int] = set()
        self.rebalances = 0
        # Raw partition -> the offset after the last message processed in this assignment.
        self.next_offsets: dict[int, int] = {}

    async def start(self) -> None:
        cfg = self.config
        self.redis = redis_client.connect(cfg.redis.url, 5)
        self.state = IntakeState(self.redis, cfg.ingest.dedup_ttl_days * 86400)
        self.producer = AIOKafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers,
                                         **producer_settings(cfg.ingest.send_timeout_s))
        await self.producer.start()
        # A separate reader for the recovery scan, outside the consumer group. It must be
        # running before the group consumer starts: the join (and with it `recover`) can
        # complete while start() is still awaiting.
        self.scanner = AIOKafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap_servers, enable_auto_commit=False)
        await self.scanner.start()
        self.finder = Finder(self.scanner, cfg.ingest.send_timeout_s, topics.REPORTS_V1)
        # Today's end offsets bound everything this process will write, so a checkpoint
        # never sends the next owner scanning from the start of an output partition.
        tps = [TopicPartition(t, p) for t in OUTPUT_TOPICS for p in await self._partitions(t)]
        for tp, end in (await self.scanner.end_offsets(tps)).items():
            self.low_water[(tp.topic, tp.partition)] = end
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.kafka.bootstrap_servers, group_id=cfg.ingest.validator_group,
            max_partition_fetch_bytes=4 << 20, **CONSUMER_DEFAULTS,
        )
        self.consumer.subscribe([topics.REPORTS_RAW], listener=_Listener(self))
        await self.consumer.start()

    async def stop(self) -> None:
        for c in (self.consumer, self.scanner, self.producer):
            try:
                await c.stop()
            except Exception:
                pass
        await self.redis.aclose()

    async def run(self) -> None:
        while not self.stopping.is_set():
            batches = await self.consumer.getmany(timeout_ms=200, max_records=2000)
            # Noted at once: aiokafka returns records of the current assignment only.
            rebalances = self.rebalances
            if not batches:
                await self._report_lag()
                continue
            async with self.lock:
                if self.rebalances != rebalances:
                    # A rebalance ran before we got the lock: the new assignment restarts
                    # every partition from its committed offset, so these records come again.
                    continue
                # aiokafka starts fetching a new assignment before the rebalance listener has
                # finished (or when it failed): never process a partition before its scan.
                unscanned = [tp for tp in batches if tp.partition not in self.recovered]
                if unscanned:
                    await self.recover(unscanned)
                await self._process(unseen([m for ms in batches.values() for m in ms], self.next_offsets))
                await self._commit({tp: ms[-1].offset + 1 for tp, ms in batches.items()})
            await self._report_lag()

    async def _process(self, msgs: list[ConsumerRecord]) -> None:
        now = time.time()
        dlq: list[tuple[ConsumerRecord, str, list]] = []
        valid: list[tuple[ConsumerRecord, ReportEvent]] = []
        for m in msgs:
            if m.value is None or len(m.value) > self.max_bytes:
                reason, errors = "too_large" if m.value else "invalid_json", [
                    {"field": "(body)", "message": f"message is over {self.max_bytes} bytes" if m.value
                     else "message has no value"}]
            else:
                report, errors = validate_json(m.value)
                if report is not None:
                    valid.append((m, report))
                    continue
                reason = dlq_reason(errors)
            dlq.append((m, reason, errors))

        # Claim all valid reports at once; raw publishers are not rate limited here (Kafka
        # itself applies back-pressure), so the source argument is only a placeholder.
        keys = [dedup_key(r.source, r.event_id) for _, r in valid]
        origins = [origin_id(m.partition, m.offset) for m, _ in valid]
        # Retried as a whole: a claim that Redis applied before the connection broke comes
        # back as our own pending value, which is written like a new one.
        claim = await self._redis(lambda: self.state.claim(None, None, keys, [PENDING + o for o in origins],
                                                           int(now * 1000)))
        to_write: list[int] = []
        duplicates: list[int] = []
        waiting: list[int] = []
        in_batch = {PENDING + o for o in origins}
        for i, existing in enumerate(claim.existing):
            own = existing[2:] == origins[i]
            if existing == "" or (own and existing.startswith(PENDING)):
                to_write.append(i)
            elif existing.startswith(ACCEPTED) and not own:
                duplicates.append(i)
            elif own:
                pass  # accepted by us before a crash, output already on the topic
            elif existing in in_batch:
                duplicates.append(i)  # a repeat of an earlier message in this same batch
            elif existing[2:] in self.already_written:
                # Claimed by a previous owner that wrote the report and died before marking
                # it accepted: it is on the topic, so this is a repeat (no need to wait).
                duplicates.append(i)
            else:
                waiting.append(i)  # an HTTP request for the same report is in flight
        for i in waiting:
            if await self._wait_for_peer(keys[i], PENDING + origins[i]):
                duplicates.append(i)
            else:
                to_write.append(i)

        received_at = rfc3339(now)
        # One record batch per partition: a send() per record cost more than validating it.
        batches = await send_keyed(self.producer, topics.REPORTS_V1, [
            (partition_key(valid[i][1].region_code).encode(), enriched(valid[i][1], received_at, origins[i]))
            for i in to_write if origins[i] not in self.already_written])
        futs = []
        for m, reason, errors in dlq:
            if origin_id(m.partition, m.offset) not in self.already_written:
                futs.append(await self.producer.send(topics.REPORTS_DLQ, dlq_record(m, reason, errors, now), key=m.key))
        for b, end in zip(batches, await asyncio.gather(*(b.next_offset() for b in batches))):
            tp = (topics.REPORTS_V1, b.partition)
            self.low_water[tp] = max(self.low_water.get(tp, 0), end)
        for md in await asyncio.gather(*futs):
            tp = (md.topic, md.partition)
            self.low_water[tp] = max(self.low_water.get(tp, 0), md.offset + 1)
        await self._redis(lambda: self.state.accept(*with_index([keys[i] for i in to_write],
                                                                [ACCEPTED + origins[i] for i in to_write],
                                                                [valid[i][1] for i in to_write])))

        self._count(valid, to_write, duplicates, dlq, now)
        newest = max((m.timestamp for m in msgs), default=0) / 1000
        if newest:
            metrics.VALIDATION_LAG.set(max(0.0, time.time() - newest))
        self.processed += len(msgs)

    def _count(self, valid, to_write: list[int], duplicates: list[int], dlq, now: float) -> None:
        """Metrics summed per batch: a labelled increment per message cost ~10 µs each."""
        accepted: Counter[str] = Counter(metrics.source_label(valid[i][1].source, self.known_sources) for i in to_write)
        dups: Counter[str] = Counter(metrics.source_label(valid[i][1].source, self.known_sources) for i in duplicates)
        for src, n in accepted.items():
            metrics.REPORTS_RECEIVED.labels(src, "raw").inc(n)
            metrics.REPORTS_ACCEPTED.labels(src, "raw").inc(n)
            metrics.SOURCE_LAST_REPORT.labels(src).set(now)
        for src, n in dups.items():
            metrics.REPORTS_RECEIVED.labels(src, "raw").inc(n)
            metrics.REPORTS_DUPLICATE.labels(src, "raw").inc(n)
        if dlq:
            metrics.REPORTS_RECEIVED.labels("other", "raw").inc(len(dlq))
        for reason, n in Counter(reason for _, reason, _ in dlq).items():
            metrics.DLQ_MESSAGES.labels(reason).inc(n)
            metrics.REPORTS_REJECTED.labels("other", reason).inc(n)

    async def _wait_for_peer(self, key: str, mine: str) -> bool:
        """True when the in-flight peer got the report accepted; False when we claimed it.

        A gateway claim left to be resolved (its produce may or may not have reached the
        broker, see intake.py) is taken over and resolved here as the gateway would: if the
        gateway's copy is on reports.v1 this is a duplicate, otherwise we write ours."""
        timeout_s = max(PENDING_TTL_MS / 1000, self.lease_s) + 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = await self._redis(lambda: self.state.get(key))
            if v is not None and v.startswith(ACCEPTED):
                return True
            if v == mine:
                return False  # our SET below was applied, but its answer was lost
            if v is None and await self._redis(lambda: self.redis.set(key, mine, nx=True, px=PENDING_TTL_MS)):
                return False
            now_ms = int(time.time() * 1000)
            attempt = Attempt.resolvable(v, now_ms) if v is not None else None
            if attempt is not None:
                held = attempt.pending(now_ms + int(self.lease_s * 1000))
                if await self._redis(lambda: self.state.swap(key, v, held)):
                    resolved = await self._resolve(key, attempt, held, mine)
                    if resolved is not None:
                        return resolved
            await asyncio.sleep(0.01)
        raise RuntimeError(f"claim {key} stayed pending for {timeout_s}s")

    async def _resolve(self, key: str, attempt: Attempt, held: str, mine: str) -> bool | None:
        """Like _wait_for_peer, for a gateway claim we hold; None if another request took it
        over meanwhile (our lease ran out), and we wait for that one."""
        send_timeout_s = self.config.ingest.send_timeout_s
        since = attempt.claimed_ms - int(send_timeout_s * 1000)
        try:
            found = await self.finder.find({attempt.partition: (since, {attempt.ingest_id})})
        except BaseException:
            await self._redis(lambda: self.state.swap(key, held, attempt.uncertain()))
            raise
        if found:
            await self._redis(lambda: self.state.accept([key], [attempt.accepted()]))
            return True
        if not await self._redis(lambda: self.state.swap(key, held, mine, PENDING_TTL_MS)):
            return None
        return False

    async def _redis(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis operation until Redis answers: a Redis restart pauses the validator
        instead of ending it, and nothing is committed before the batch is done. Every
        operation retried this way is idempotent or a compare-and-swap."""
        failures = 0
        while True:
            try:
                return await op()
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as e:
                # A full Redis (maxmemory) pauses the validator too: it needs an operator, and
                # restarting would only read the same batch again into the same refusal.
                if self.stopping.is_set() or (isinstance(e, ResponseError) and not redis_full(e)):
                    raise
                failures += 1
                delay = backoff_s(failures, 0.1, 2.0)
                log.warning("redis %s (%s); retrying in %.1fs", "full" if redis_full(e) else "unavailable", e, delay)
                await asyncio.sleep(delay)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        # Offsets first, checkpoint second: a checkpoint must never point past output of a
        # raw message that is not committed yet, or a crash would leave that output unscanned
        # and the message would be written again. A crash between the two only means the
        # next owner scans a little more.
        await self.consumer.commit(offsets)
        water = {f"{t}/{p}": o for (t, p), o in self.low_water.items()}
        checkpoints: dict[int, bytes] = {}
        for tp, committed in offsets.items():
            cp = water
            inherited = self.inherited.get(tp.partition)
            if inherited is not None:
                last, floor = inherited
                if committed > last:
                    del self.inherited[tp.partition]
                else:
                    cp = {k: min(o, floor.get(k, o)) for k, o in water.items()}
            checkpoints[tp.partition] = orjson.dumps(cp)

        async def write() -> None:
            async with self.redis.pipeline(transaction=False) as p:
                for part, cp in checkpoints.items():
                    p.set(CHECKPOINT.format(part), cp)
                await p.execute()

        await self._redis(write)

    async def recover(self, partitions: list[TopicPartition]) -> None:
        """Find output that a previous owner of these raw partitions wrote after its last
        checkpoint, so that reprocessing does not write it twice."""
        raw_parts = {tp.partition for tp in partitions}
        start: dict[tuple[str, int], int] = {}
        for part in raw_parts:
            cp = await self._redis(lambda: self.redis.get(CHECKPOINT.format(part)))
            if cp is None:
                # Never checkpointed: anything on the output topics may be ours; scan it all.
                cp_map: dict[str, int] = {}
            else:
                cp_map = orjson.loads(cp)
            for t in OUTPUT_TOPICS:
                for p in self.producer.client.cluster.partitions_for_topic(t) or await self._partitions(t):
                    pos = cp_map.get(f"{t}/{p}", 0)
                    start[(t, p)] = min(start.get((t, p), pos), pos)
        found = await self._scan(start, raw_parts)
        self.already_written |= found
        floor = {f"{t}/{p}": o for (t, p), o in start.items()}
        for part in raw_parts:
            offsets = [int(i.split("-")[2]) for i in found if int(i.split("-")[1]) == part]
            if offsets:
                self.inherited[part] = (max(offsets), floor)
            else:
                self.inherited.pop(part, None)
        self.recovered |= raw_parts
        if found:
            log.info("recovery: %d messages already written by a previous owner", len(found))

    async def _partitions(self, topic: str) -> set[int]:
        await self.producer.client.force_metadata_update()
        return self.producer.client.cluster.partitions_for_topic(topic) or set()

    async def _scan(self, start: dict[tuple[str, int], int], raw_parts: set[int]) -> set[str]:
        found: set[str] = set()

        def take(m: ConsumerRecord) -> None:
            i = ingest_id(m)
            if i.startswith("raw-") and int(i.split("-")[1]) in raw_parts:
                found.add(i)

        await read_to_high_watermark(self.scanner, {TopicPartition(t, p): o for (t, p), o in start.items()}, take)
        return found

    async def _report_lag(self) -> None:
        await report_lag(self.consumer, self.config.ingest.validator_group)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, v: Validator):
        self.v = v

    async def on_partitions_revoked(self, revoked):
        # Wait for the batch in flight: its commit must land before another owner takes over.
        async with self.v.lock:
            self.v.rebalances += 1
            self.v.recovered.clear()
            self.v.next_offsets.clear()

    async def on_partitions_assigned(self, assigned):
        async with self.v.lock:
            self.v.rebalances += 1
            self.v.recovered.clear()
            self.v.next_offsets.clear()
            if assigned:
                # If this fails, aiokafka only logs it; run() then scans before processing.
                await self.v.recover(list(assigned))


async def serve(config: Config) -> None:
    from prometheus_client import start_http_server

    start_http_server(config.ingest.metrics_port, addr=config.ingest.host)
    v = Validator(config)
    await v.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, v.stopping.set)
    heap.settle()
    log.info("validator consuming %s", topics.REPORTS_RAW)
    try:
        await v.run()
    finally:
        await v.stop()
