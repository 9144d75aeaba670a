"""How the durable broker behaves as it fills, and how long the scoring worker takes to start
again over a full changelog (`python -m bench.durable_restart --levels 1000,5000`).

Simulated, not waited for: the batches a day (or a week) would leave are produced straight
into the baselines changelog, one record per batch (as the scoring worker writes its closing
records), with `~filler|<p>` keys that the agents skip (services/scoring/agents.py `_keys_of`)
and Faust restores like any other; four partitions filled at once. At each level: the produce
rate while filling, one partition read from its start by a plain consumer (batches/s, what
table recovery does), one report's produce-to-consume time on a partition that full (what a
consumer at the end pays: Tansu lists the partition for each fetch), and the time from
starting the scoring worker to its /readyz answering 200 (changelog recovery)."""

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


@dataclass
class Level:
    per_partition: int  # batches in each changelog partition
    produce_per_s: float  # one-record batches/s while filling up to this level (4 partitions at once)
    read_per_s: float  # batches/s reading one partition from its start
    end_to_end_ms: float  # one record produced and consumed at the end of a partition this full
    restart_s: float  # scoring started → /readyz 200


async def fill(bootstrap: str, upto: int, have: int) -> float:
    """Produce one-record batches into each changelog partition until it holds `upto`."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await p.start()
    try:
        async def one(part: int) -> None:
            for _ in range(upto - have):
                await p.send_and_wait(CHANGELOG, VALUE, key=f"~filler|{part}".encode(), partition=part)

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
        while seen < n:
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
            await p.send_and_wait(CHANGELOG, VALUE, key=b"~filler|1", partition=1)
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
    while not ready(stack.config.scoring.web_port):
        if stack.crashed() or time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"scoring not ready after {time.monotonic() - t0:.0f} s; see {stack.logdir}")
        time.sleep(0.2)
    return time.monotonic() - t0


def measure(levels: list[int], keep: bool, log=print) -> tuple[float, list[Level]]:
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
            took = restart_s(stack)
            out.append(Level(have, produce, read, e2e, took))
            log(f"durable, {have:,} batches per changelog partition: produce {produce:,.0f} batches/s, "
                f"read {read:,.0f} batches/s, one record produce→consume {e2e:.0f} ms, scoring ready in {took:.1f} s")
    return fresh, out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.durable_restart", description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1000,5000", help="batches per changelog partition, comma-separated")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    measure([int(x) for x in args.levels.split(",")], args.keep, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
