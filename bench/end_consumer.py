"""A consumer at the end of a large partition on the durable broker: per-record latency, catch-up
rate, and what Tansu asks of the store per record, with the store merging old batches and
without (`python -m bench.end_consumer --levels 500,5000,35000`).

Only the store and Tansu run, on a pantau.reports.v1 of one partition. It is filled with
one-record batches a day old, as Tansu writes them (bench.durable_restart.fill_partition, the
broker stopped); then a consumer at its end (fetch wait 50 ms, as the services' consumers) gets
records produced one at a time (each its own batch, as the gateway's are at a few reports a
minute), and a consumer behind by --behind records catches up. The store's request counters
(`GET /_requests`, cli/s3requests.py) say what each record cost: listings, keys listed, reads.
"before": the store started without `--merge`; "after": as `pantau up` starts it, merging the
old batches before it serves (cli/s3merge.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import cli.stack
from bench.durable_restart import fill_partition
from bench.durable_stack import topics_dir
from cli.stack import Child, broker, create_bucket, free_port, store, wait_port
from shared import topics
from shared.kafka import FETCH_MAX_WAIT_MS

TOPIC = topics.REPORTS_V1
DAY_S = 86400.0
VALUE = b"r" * 260  # about a report on pantau.reports.v1
ROUND_S = 60.0  # a record not consumed within this is given up on, and the level with it


@dataclass
class Result:
    batches: int
    merged: bool
    objects: int = 0  # objects in the partition's folder when the consumer started
    latencies_ms: list[float] = field(default_factory=list)
    per_record: Counter = field(default_factory=Counter)  # store requests per record at the end
    catch_up_per_s: float | None = None
    catch_up_requests: Counter = field(default_factory=Counter)
    gave_up: str = ""

    def pct(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        s = sorted(self.latencies_ms)
        return s[min(len(s) - 1, int(q * len(s)))]


class Infra:
    """Store and Tansu over one folder, restartable (the fill is written while they are down)."""

    def __init__(self, root: Path):
        self.root, self.logs = root, root / "logs"
        self.store_port, self.port = free_port(), free_port()
        self.children: list[Child] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, merging: bool = True) -> None:
        merged, cli.stack.MERGED_TOPICS = cli.stack.MERGED_TOPICS, cli.stack.MERGED_TOPICS if merging else ()
        try:
            s = store(self.store_port, self.logs, self.root / "broker").start()
        finally:
            cli.stack.MERGED_TOPICS = merged
        self.children = [s]
        wait_port("127.0.0.1", self.store_port, 3600, s.proc, "store")
        create_bucket(self.store_port)
        b = broker(self.port, self.logs, self.store_port).start()
        self.children.append(b)
        wait_port("127.0.0.1", self.port, 15, b.proc, "broker")

    def stop(self) -> None:
        for c in reversed(self.children):
            c.stop()
        self.children = []

    def requests(self) -> Counter:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.store_port}/_requests", timeout=10) as r:
            return Counter({k: v["count"] for k, v in json.load(r).items()})


@contextmanager
def infra(keep: bool) -> Iterator[Infra]:
    i = Infra(Path(tempfile.mkdtemp(prefix="pantau-bench-end-")))
    try:
        yield i
    finally:
        i.stop()
        if not keep:
            shutil.rmtree(i.root, ignore_errors=True)


async def create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def at_the_end(i: Infra, r: Result, rounds: int, behind: int, wait_ms: int) -> None:
    tp = TopicPartition(TOPIC, 0)
    c = AIOKafkaConsumer(bootstrap_servers=i.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=wait_ms)
    p = AIOKafkaProducer(bootstrap_servers=i.bootstrap, acks="all", linger_ms=0)
    await c.start()
    await p.start()
    try:
        c.assign([tp])
        await c.seek_to_end(tp)
        await c.position(tp)
        before = i.requests()
        for n in range(rounds):
            t0 = time.perf_counter()
            await p.send_and_wait(TOPIC, VALUE, partition=0)
            while not await c.getmany(tp, timeout_ms=1000):
                if time.perf_counter() - t0 > ROUND_S:
                    r.gave_up = f"record {n + 1} not consumed within {ROUND_S:.0f} s"
                    r.per_record = i.requests() - before  # what the wait cost, over the rounds so far
                    return
            r.latencies_ms.append((time.perf_counter() - t0) * 1000)
        r.per_record = Counter({k: v / rounds for k, v in (i.requests() - before).items()})
        # Catch-up: `behind` records (one batch each) land while the consumer looks away.
        start = await c.position(tp)
        for _ in range(behind):
            await p.send_and_wait(TOPIC, VALUE, partition=0)
        before, seen, t0 = i.requests(), 0, time.perf_counter()
        c.seek(tp, start)
        while seen < behind:
            for ms in (await c.getmany(tp, timeout_ms=1000)).values():
                seen += len(ms)
            if time.perf_counter() - t0 > ROUND_S * 5:
                r.gave_up = f"caught up {seen} of {behind} in {ROUND_S * 5:.0f} s"
                return
        r.catch_up_per_s = behind / (time.perf_counter() - t0)
        r.catch_up_requests = i.requests() - before
    finally:
        await p.stop()
        await c.stop()


def measure(levels: list[int], rounds: int, behind: int, keep: bool, wait_ms: int = FETCH_MAX_WAIT_MS,
            log=print) -> list[Result]:
    """For each level, without merging then with: one Result each."""
    out = []
    for level in levels:
        for merging in (False, True):
            with infra(keep) as i:
                i.start()
                asyncio.run(create_topic(i.bootstrap))
                i.stop()
                folder = topics_dir(i.root) / TOPIC / "partitions" / f"{0:010d}"
                have = fill_partition(folder, level, lambda n: b"65.%02d" % (n % 5), VALUE, ago_s=DAY_S)
                i.start(merging)
                r = Result(have, merging, sum(1 for _ in (folder / "records").glob("*.batch")))
                asyncio.run(at_the_end(i, r, rounds, behind, wait_ms))
                out.append(r)
                log(line(r))
    return out


def line(r: Result) -> str:
    p50, p99 = r.pct(0.5), r.pct(0.99)
    lat = f"p50 {p50:.0f} ms, p99 {p99:.0f} ms over {len(r.latencies_ms)}" if p50 is not None else "no record"
    asks = ", ".join(f"{k} {v:g}" for k, v in sorted(r.per_record.items()))
    up = (f"catch-up {r.catch_up_per_s:,.0f} records/s ({', '.join(f'{k} {v:,}' for k, v in sorted(r.catch_up_requests.items()))})"
          if r.catch_up_per_s else "catch-up not measured")
    return (f"{r.batches:,} batches, {'after (merged)' if r.merged else 'before'}, {r.objects:,} objects: one record at the end {lat}; {up}; {'until it gave up' if r.gave_up else 'per record'} the store answered: "
            f"{asks or '-'}{'; GAVE UP: ' + r.gave_up if r.gave_up else ''}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.end_consumer", description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="500,5000,35000", help="batches in the partition, comma-separated")
    ap.add_argument("--rounds", type=int, default=50, help="records produced and consumed one at a time")
    ap.add_argument("--behind", type=int, default=500, help="records the catching-up consumer is behind by")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--fetch-wait-ms", type=int, default=FETCH_MAX_WAIT_MS, help="the consumer's fetch_max_wait_ms")
    args = ap.parse_args(argv)
    measure([int(x) for x in args.levels.split(",")], args.rounds, args.behind, args.keep, args.fetch_wait_ms,
            log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
