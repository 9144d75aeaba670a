"""How the durable broker behaves as it fills, and how long the scoring worker takes to start
again over a full changelog (`python -m bench.durable_restart --levels 1000,5000`).

Simulated, not waited for: with the stack stopped, the batches a day (or a week) would leave
are written straight into the store's folder of the baselines changelog, as Tansu writes them
(one file per record batch, `<offset>.batch`, a Kafka v2 record batch of one record, and the
partition's `watermark.json`), with keys `~fill<i>|<p>` cycling over --keys per partition (the
cells a day touches; the agents skip `~` keys, services/scoring/agents.py `_keys_of`, and
Faust restores them like any other). At each level, the stack started without compaction:
one partition read from its start by a plain consumer (batches/s over at most a minute: what
table recovery does), one record's produce-to-consume time on a partition that full (a
consumer at the end pays a listing of the partition per fetch), and the time from starting
the scoring worker to its /readyz answering 200 (changelog recovery); then the whole stack
started as `pantau up` does, the store compacting the changelogs first (cli/s3compact.py):
batches left, and the time to ready."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.record.default_records import DefaultRecordBatchBuilder

import cli.stack

from bench.durable_stack import batches, full_stack, topics_dir
from bench.stack import PARTITIONS

CHANGELOG = "pantau-scoring-baselines-changelog"
VALUE = b"x" * 300  # about a cell's compact JSON
READ_FOR_S = 60.0  # the read rate is measured over the first minute of reading at most


@dataclass
class Level:
    per_partition: int  # batches in each changelog partition
    read_per_s: float | None  # batches/s reading one partition from its start (None: not measured)
    end_to_end_ms: float | None  # one record produced and consumed at the end of a partition this full
    restart_s: float | None  # scoring started → /readyz 200, store not restarted (no compaction); None: skipped
    compacted_to: int  # batches per changelog partition after the whole stack's restart
    compact_s: float  # the store's start, compaction included
    full_restart_s: float  # store, broker, Redis and scoring started → /readyz 200


def fill(workdir: Path, upto: int, keys: int) -> None:
    """Write one-record batches into each changelog partition until it holds `upto`, as Tansu
    would have (the stack stopped)."""
    for part in range(PARTITIONS):
        folder = topics_dir(workdir) / CHANGELOG / "partitions" / f"{part:010d}"
        fill_partition(folder, upto, lambda i: f"~fill{i % keys}|{part}".encode(), VALUE)


def fill_partition(folder: Path, upto: int, key_of, value: bytes, ago_s: float = 0.0) -> int:
    """Write one-record batches (key `key_of(i)`) into a partition's folder, as Tansu would
    have with the broker stopped, until it holds `upto`, the newest `ago_s` seconds old; how
    many it holds."""
    mark = folder / "watermark.json"
    high = (json.loads(mark.read_text())["high"] or 0) if mark.exists() else 0
    (folder / "records").mkdir(parents=True, exist_ok=True)
    have = sum(1 for n in (folder / "records").iterdir() if n.name.endswith(".batch"))
    now = int(time.time() * 1000)
    # Each batch its own millisecond, oldest first, as one-record batches written one by one
    # are: Tansu takes a partition's end offset from the newest LastModified.
    first_ns = time.time_ns() - int(ago_s * 1e9) - (upto - have) * 1_000_000
    for i in range(have, upto):
        b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=-1,
                                      producer_epoch=-1, base_sequence=-1, batch_size=1 << 16)
        b.append(0, timestamp=now, key=key_of(i), value=value, headers=[])
        raw = b.build()
        raw[0:8] = struct.pack(">q", high)  # the base offset (outside the CRC)
        path = folder / "records" / f"{high:020d}.batch"
        path.write_bytes(bytes(raw))
        at = first_ns + (i - have) * 1_000_000
        os.utime(path, ns=(at, at))
        high += 1
    mark.write_text(json.dumps({"low": None, "high": high, "timestamps": None}))
    return max(have, upto)


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


def measure(levels: list[int], keys: int, keep: bool, plain_max: int, reads: bool = True,
            log=print) -> tuple[float, list[Level]]:
    """(seconds to ready on an empty broker, one Level per fill level)."""
    out = []
    with full_stack(durable=True, keep=keep, services=("scoring",)) as (stack, _):
        bootstrap = stack.config.kafka.bootstrap_servers
        fresh = restart_s(stack)
        log(f"durable restart, empty changelog: scoring ready in {fresh:.1f} s")
        for level in levels:
            stack.stop()
            fill(stack.workdir, level, keys)
            have = batches(stack.workdir)[(CHANGELOG, 0)]
            compacting, cli.stack.COMPACTED_TOPICS = cli.stack.COMPACTED_TOPICS, "-none-"
            try:
                stack.start_store()
            finally:
                cli.stack.COMPACTED_TOPICS = compacting
            stack.start_broker()
            stack.start_redis()
            read = asyncio.run(read_partition(bootstrap, have)) if reads else None
            e2e = asyncio.run(end_to_end(bootstrap)) if reads else None
            took = None
            if have <= plain_max:
                t0 = time.monotonic()
                stack.start_service("scoring", wait=False)
                took = wait_ready(stack, t0, 3600)
            compact, full = full_restart_s(stack)
            left = batches(stack.workdir)[(CHANGELOG, 0)]
            out.append(Level(have, read, e2e, took, left, compact, full))
            log(f"durable, {have:,} batches per changelog partition ({keys} keys): read {read or 0:,.1f} batches/s, "
                f"one record produce→consume {e2e or 0:.0f} ms, scoring ready in "
                f"{'(not measured)' if took is None else f'{took:.1f} s'} uncompacted; whole stack restarted: "
                f"compacted to {left:,} per partition, store started in {compact:.1f} s, scoring ready in {full:.1f} s")
    return fresh, out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.durable_restart", description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1000,5000", help="batches per changelog partition, comma-separated")
    ap.add_argument("--keys", type=int, default=200, help="distinct keys per changelog partition")
    ap.add_argument("--plain-max", type=int, default=2000,
                    help="restart scoring alone over the uncompacted changelog only up to this many batches per "
                         "partition (it slows down quadratically)")
    ap.add_argument("--no-reads", action="store_true", help="skip the read and produce→consume measurements")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    measure([int(x) for x in args.levels.split(",")], args.keys, args.keep, args.plain_max, not args.no_reads, log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
