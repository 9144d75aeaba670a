"""The embedded broker durable (Tansu `s3://` on cli/s3store.py's folder) beside `memory://`, in one
run: produce and consume reports/s, a consumer group's first batch after start, and what is
left after a power cut (broker and store killed with SIGKILL at once, then started again)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.context import Context
from bench.report import Row
from bench.stack import PARTITIONS, read_topic, write_config
from cli.stack import EmbeddedStack
from shared import topics
from shared.kafka import ensure_topics

TOPIC = topics.REPORTS_V1
GROUP = "bench-broker"
COUNTS = {"full": 100_000, "quick": 10_000}
SINGLES = {"full": 3_000, "quick": 500}  # reports sent one at a time


@dataclass
class Measured:
    single_per_s: float  # one report per acks=all request, one at a time: the gateway's case
    single_p50_ms: float
    single_p99_ms: float
    produce_per_s: float
    consume_per_s: float
    join_s: float  # consumer start to its first batch
    kept: int  # on the topic after the power cut
    committed_kept: bool  # the group's committed offsets the same after it
    disk_mb: float


def _bodies(n: int, tag: str = "b") -> list[bytes]:
    return [orjson.dumps({"event_id": f"{tag}-{i}", "source": "bench", "region_code": "65.71", "category": "other",
                          "severity": 2, "occurred_at": "2026-12-02T08:00:00+08:00", "title": "Laporan uji",
                          "received_at": "2026-12-02T00:00:00Z", "ingest_id": f"{i:032x}"}) for i in range(n)]


async def _produce(bootstrap: str, bodies: list[bytes]) -> float:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await p.start()
    try:
        t0 = time.perf_counter()
        futs = [await p.send(TOPIC, b, key=b"65.71" if i % 2 else b"65.01") for i, b in enumerate(bodies)]
        await asyncio.gather(*futs)
        return len(bodies) / (time.perf_counter() - t0)
    finally:
        await p.stop()


async def _produce_one_by_one(bootstrap: str, bodies: list[bytes]) -> tuple[float, float, float]:
    """(reports/s, p50 ms, p99 ms) sending each report alone and waiting for its ack: every
    report is its own record batch, so the store writes (and flushes) one object per report."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await p.start()
    try:
        took = []
        t0 = time.perf_counter()
        for b in bodies:
            t = time.perf_counter()
            await p.send_and_wait(TOPIC, b, key=b"65.71")
            took.append(time.perf_counter() - t)
        rate = len(bodies) / (time.perf_counter() - t0)
    finally:
        await p.stop()
    took.sort()
    return rate, took[len(took) // 2] * 1000, took[int(len(took) * 0.99)] * 1000


async def _consume(bootstrap: str, n: int) -> tuple[float, float]:
    """(seconds to the first batch, reports/s from the first batch to the last), committing."""
    c = AIOKafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
                         auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000)
    t0 = time.perf_counter()
    await c.start()
    seen, first = 0, None
    try:
        while seen < n:
            got = await c.getmany(timeout_ms=500, max_records=5000)
            for ms in got.values():
                if first is None:
                    first = time.perf_counter()
                for m in ms:
                    orjson.loads(m.value)
                seen += len(ms)
            if got:
                await c.commit()
        end = time.perf_counter()
    finally:
        await c.stop()
    assert first is not None
    return first - t0, seen / max(end - first, 1e-6)


async def _committed(bootstrap: str) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    await c.start()
    try:
        return {p: (await c.committed(TopicPartition(TOPIC, p))) or 0 for p in range(PARTITIONS)}
    finally:
        await c.stop()


def _kept(bootstrap: str) -> int:
    """Distinct reports readable from the topic (read, not end_offsets: Tansu's ListOffsets
    answers the last batch's base offset + 1)."""
    return len({orjson.loads(v)["event_id"] for _, _, v in read_topic(bootstrap, TOPIC, timeout_s=60)})


def measure(durable: bool, n: int, singles: int, keep: bool) -> Measured:
    workdir = Path(tempfile.mkdtemp(prefix=f"pantau-bench-broker-{'durable' if durable else 'memory'}-"))
    stack = EmbeddedStack(write_config(workdir / "pantau.yaml"), workdir, (), durable=durable)
    bootstrap = stack.config.kafka.bootstrap_servers
    try:
        stack.start_infra()
        single = asyncio.run(_produce_one_by_one(bootstrap, _bodies(singles, "s")))
        produce = asyncio.run(_produce(bootstrap, _bodies(n)))
        join, consume = asyncio.run(_consume(bootstrap, n + singles))
        before = asyncio.run(_committed(bootstrap))
        # The power cut: every part of the broker at once, no chance to flush anything.
        for name in ("broker", "store"):
            if name in stack.children:
                stack.children[name].kill()
        if durable:
            stack.start_store()
        stack.start_broker()
        ensure_topics(bootstrap, PARTITIONS)  # as pantau up does: memory:// has lost them
        kept, after = _kept(bootstrap), asyncio.run(_committed(bootstrap))
        disk = sum(f.stat().st_size for f in (workdir / "broker").rglob("*") if f.is_file()) if durable else 0
        return Measured(*single, produce, consume, join, kept, after == before, disk / 1e6)
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def run(ctx: Context) -> list[Row]:
    n = COUNTS[ctx.budget.name]
    singles = SINGLES[ctx.budget.name]
    total = n + singles
    got = {}
    for durable in (True, False):
        got[durable] = m = measure(durable, n, singles, ctx.keep)
        ctx.log(f"broker {'durable s3://' if durable else 'memory://'}: one at a time {m.single_per_s:,.0f}/s "
                f"(p50 {m.single_p50_ms:.1f} ms, p99 {m.single_p99_ms:.1f} ms), batched {m.produce_per_s:,.0f}/s, "
                f"consume {m.consume_per_s:,.0f}/s, first batch of a new group {m.join_s:.1f} s, after kill -9 "
                f"{m.kept:,}/{total:,} on the topic, committed offsets kept {m.committed_kept}, {m.disk_mb:.1f} MB")
    d, mem = got[True], got[False]
    ctx.setup.append(f"broker: {singles:,} reports (~250 B JSON) sent one at a time (acks=all, each waited for), then "
                     f"{n:,} batched (linger 5 ms) to {TOPIC} ({PARTITIONS} partitions); all consumed by one aiokafka "
                     f"group member (getmany, json.loads, commit per batch); then broker and store SIGKILLed together "
                     f"and started again on the same workdir")
    notes = [f"first batch of a new consumer group: durable {d.join_s:.1f} s, memory {mem.join_s:.1f} s",
             f"after kill -9 of broker and store: durable {d.kept:,} of {total:,} reports on the topic, committed "
             f"offsets {'kept' if d.committed_kept else 'LOST'}; memory {mem.kept:,} of {total:,}",
             f"durable store on disk: {d.disk_mb:.1f} MB for {total:,} reports"]
    return [Row("broker produce, one report per acks=all request, durable vs memory://", "reports/s",
                d.single_per_s, mem.single_per_s, None, d.single_p50_ms, d.single_p99_ms, mem.single_p50_ms,
                mem.single_p99_ms, notes=notes),
            Row("broker produce (batched), durable s3:// vs memory://", "reports/s", d.produce_per_s,
                mem.produce_per_s, None),
            Row("broker consume (group), durable s3:// vs memory://", "reports/s", d.consume_per_s, mem.consume_per_s,
                None)]
