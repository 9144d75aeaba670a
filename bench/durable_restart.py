"""How the durable broker behaves as it fills, and how long the scoring worker takes to start
again over a full changelog (`python -m bench.durable_restart --levels 1000,5000`).

Simulated, not waited for: the batches a day (or a week) would leave are produced straight
into the baselines changelog, one record per batch (as the scoring worker writes at a few
reports a minute), with keys `~fill<i>|<p>` cycling over KEYS per partition (as many cells as
a busy day touches; the agents skip `~` keys, services/scoring/agents.py `_keys_of`, and Faust
restores them like any other); four partitions filled at once. At each level: the produce rate
while filling, one partition read from its start by a plain consumer (batches/s, what table
recovery does), one record's produce-to-consume time on a partition that full (what a
consumer at the end pays: Tansu lists the partition for each fetch), the time from starting
the scoring worker to its /readyz answering 200 over the whole changelog (no compaction: the
store stays up), and the same after a restart of the whole stack, whose store compacts the
changelogs first (cli/s3compact.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import urllib.request
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.durable_stack import batches, full_stack
from bench.stack import PARTITIONS

CHANGELOG = "pantau-scoring-baselines-changelog"
VALUE = b"x" * 300  # about a cell's compact JSON
KEYS = 1000  # distinct keys per partition
READ_FOR_S = 60.0  # the read rate is measured over the first minute of reading at most


@dataclass
class Level:
    per_partition: int  # batches in each changelog partition
    produce_per_s: float  # one-record batches/s while filling up to this level (4 partitions at once)
    read_per_s: float  # batches/s reading one partition from its start
    end_to_end_ms: float  # one record produced and consumed at the end of a partition this full
    restart_s: float | None  # scoring started → /readyz 200, store not restarted (no compaction); None: skipped
    compacted_to: int  # batches per changelog partition after the whole stack's restart
    compact_s: float  # the store's start, compaction included
    full_restart_s: float  # store, broker, Redis and scoring started → /readyz 200


async def fill(bootstrap: str, upto: int, have: int) -> float:
    """Produce one-record batches into each changelog partition until it holds `upto`."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await p.start()
    try:
        async def one(part: int) -> None:
            for i in range(have, upto):
                await p.send_and_wait(CHANGELOG, VALUE, key=f"~fill{i % KEYS}|{part}".encode(), partition=part)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(part) for part in range(PARTITIONS)))
        return (upto - have) * PARTITIONS / (time.perf_counter() - t0)
    finally:
        await p.stop()


async def read_partition(bootstrap: str, n: int) -> float:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    tp = TopicPartition(CHANGELOG, 0)
    try:
        c.assign([tp])
        await c.seek_to_beginning(tp)
        seen, t0 = 0, time.perf_counter()
        while seen < n and time.perf_counter() - t0 < READ_FOR_S:
            for ms in (await c.getmany(tp, timeout_ms=1000, max_records=10_000)).values():
                seen += len(ms)
        return seen / (time.perf_counter() - t0)
    finally:
        await c.stop()


async def end_to_end(bootstrap: str, rounds: int = 20) -> float:
    """Median ms from sending one record to a consumer at the partition's end getting it."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="latest",
                         fetch_max_wait_ms=50)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await c.start()
    await p.start()
    tp = TopicPartition(CHANGELOG, 1)
    took = []
    try:
        c.assign([tp])
        await c.seek_to_end(tp)
        await c.position(tp)
        for _ in range(rounds):
            t0 = time.perf_counter()
            await p.send_and_wait(CHANGELOG, VALUE, key=b"~fill0|1", partition=1)
            got = False
            while not got:
                got = bool(await c.getmany(tp, timeout_ms=1000))
            took.append((time.perf_counter() - t0) * 1000)
    finally:
        await p.stop()
        await c.stop()
    took.sort()
    return took[len(took) // 2]


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def restart_s(stack, timeout_s: float = 3600) -> float:
    stack.children["scoring"].stop()
    t0 = time.monotonic()
    stack.start_service("scoring", wait=False)
    return wait_ready(stack, t0, timeout_s)


def full_restart_s(stack, timeout_s: float = 3600) -> tuple[float, float]:
    """(store start with its compaction, the whole stack started → scoring ready), as after a
    Ctrl-C and `pantau up` on the same workdir."""
    stack.stop()
    t0 = time.monotonic()
    stack.start_store()
    compact = time.monotonic() - t0
    stack.start_broker()
    stack.start_redis()
    stack.start_service("scoring", wait=False)
    return compact, wait_ready(stack, t0, timeout_s)


def wait_ready(stack, t0: float, timeout_s: float) -> float:
    while not ready(stack.config.scoring.web_port):
        if stack.crashed() or time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"scoring not ready after {time.monotonic() - t0:.0f} s; see {stack.logdir}")
        time.sleep(0.2)
    return time.monotonic() - t0


def measure(levels: list[int], keep: bool, plain_max: int, log=print) -> tuple[float, list[Level]]:
    """(seconds to ready on an empty broker, one Level per fill level)."""
    out = []
    with full_stack(durable=True, keep=keep, services=("scoring",)) as (stack, _):
        bootstrap = stack.config.kafka.bootstrap_servers
        fresh = restart_s(stack)
        log(f"durable restart, empty changelog: scoring ready in {fresh:.1f} s")
        for level in levels:
            have = batches(stack.workdir)[(CHANGELOG, 0)]
            produce = asyncio.run(fill(bootstrap, level, have))
            have = batches(stack.workdir)[(CHANGELOG, 0)]
            read = asyncio.run(read_partition(bootstrap, have))
            e2e = asyncio.run(end_to_end(bootstrap))
            took = restart_s(stack) if have <= plain_max else None
            compact, full = full_restart_s(stack)
            left = batches(stack.workdir)[(CHANGELOG, 0)]
            out.append(Level(have, produce, read, e2e, took, left, compact, full))
            log(f"durable, {have:,} batches per changelog partition: produce {produce:,.0f} batches/s, "
                f"read {read:,.0f} batches/s, one record produce→consume {e2e:.0f} ms, scoring ready in {'(not measured)' if took is None else f'{took:.1f} s'}; "
                f"whole stack restarted: compacted to {left:,} in {compact:.1f} s, scoring ready in {full:.1f} s")
    return fresh, out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.durable_restart", description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1000,5000", help="batches per changelog partition, comma-separated")
    ap.add_argument("--plain-max", type=int, default=2000,
                    help="restart scoring alone over the uncompacted changelog only up to this many batches per "
                         "partition (it slows down quadratically)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    measure([int(x) for x in args.levels.split(",")], args.keep, args.plain_max, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
