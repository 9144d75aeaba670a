"""The scoring stage: one scoring worker (`python -m services.scoring`) beside two Faust
baselines, all reading the same pre-produced reports from the same broker in one run.

- pantau: N enriched reports (the `pantau.reports.v1` value: a ReportEvent plus received_at
  and ingest_id, keyed by kabupaten/kota) over the 514 kabupaten/kota × 9 categories are
  produced to `pantau.reports.v1` while scoring is down; then the worker starts, and the rate
  counts from its first finished batch (group join and recovery excluded) until its
  `pantau_scoring_reports_total` says all N are read.
- ceiling: a Faust agent that only decodes each event (Faust's own per-event ceiling).
- naive: a Faust agent doing `table[key] += 1` per event on a changelog-backed table.
The baselines read the same messages from a per-run topic with the same partitions, timed
the same way (their count, polled at the same interval, from their first event to N).

`python -m bench.scoring faust {decode|naive} ...` runs one baseline app (a subprocess of the
stage); it writes its count of events to a progress file every 0.1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator

import orjson

from bench.context import Context
from bench.cpu import CpuMeter
from bench.profile import sampled
from bench.report import Row
from bench.stack import PARTITIONS, create_topic, metric, peak_mb, scrape, write_config
from cli.stack import Child, EmbeddedStack, free_port
from shared import topics

TARGET_VS_CEILING = 0.8
TARGET_VS_NAIVE = 3.0
TARGET_PEAK_MB = 300.0
POLL_S = 0.1
# Scoring's /metrics grows with the cells above normal (pantau_region_level), and rendering it
# takes the worker's CPU: polled less often, so that the measurement does not slow it down.
SCORING_POLL_S = 0.5
BASE_TOPIC = "bench.scoring.in"
N_FULL, N_QUICK = 50_000, 5_000
# Outcomes that finish a report; `ahead` (read too early, read again) and `redelivered` do not.
FINAL = ("counted", "late", "duplicate", "too_old", "invalid")


# --- the workload --------------------------------------------------------------------------------
def messages(tag: str, n: int) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs for `pantau.reports.v1`: report i goes to kabupaten/kota i mod 514 and
    category (i // 514) mod 9, so every cell of the grid is touched; occurred_at is within the
    region's local today (a few seconds ago, never before local midnight)."""
    from shared.regions import registry
    from shared.categories import CATEGORIES
    from shared.times import rfc3339

    reg = registry()
    kabkota = reg.codes(2)
    now = time.time()
    at: dict[object, str] = {}
    received = rfc3339(now)
    out = []
    for i in range(n):
        region = kabkota[i % len(kabkota)]
        tz = reg.timezone_of(region)
        if tz not in at:
            local = datetime.fromtimestamp(now, tz)
            midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
            at[tz] = max(midnight, local - timedelta(seconds=30)).isoformat(timespec="seconds")
        value = {
            "event_id": f"bench-{tag}-{i:08d}",
            "source": "bench-feed",
            "region_code": region,
            "category": CATEGORIES[(i // len(kabkota)) % len(CATEGORIES)],
            "severity": 1 + i % 3,
            "occurred_at": at[tz],
            "title": "Pengerahan massa di depan kantor KPU kabupaten menjelang rekapitulasi suara",
            "description": "Sekitar 300 orang berkumpul menuntut penghitungan ulang; aparat berjaga, "
                           "belum ada bentrokan. Laporan dari anggota FKDM kecamatan.",
            "verified": i % 3 == 0,
            "participants": 300 + i % 200,
            "attributes": {"reporter": "fkdm", "channel": "app"},
            "received_at": received,
            "ingest_id": f"bench-{tag}-{i:08d}",
        }
        out.append((region.encode(), orjson.dumps(value)))
    return out


# --- stage ---------------------------------------------------------------------------------------
@contextmanager
def stack_with_scoring(keep: bool, tag: str = "scoring", partitions: int = PARTITIONS) -> Iterator[EmbeddedStack]:
    """Broker and Redis; scoring's web port free. Scoring itself is started by the stage."""
    workdir = Path(tempfile.mkdtemp(prefix=f"pantau-bench-{tag}-"))
    cfg = write_config(workdir / "pantau.yaml", partitions=partitions)
    cfg.write_text(cfg.read_text() + f"scoring:\n  web_port: {free_port()}\n")
    stack = EmbeddedStack(cfg, workdir, ())
    failed = True
    try:
        stack.start_infra()
        yield stack
        failed = False
    finally:
        stack.stop()
        if failed or keep:
            print(f"bench: stack folder with logs kept at {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


class Timed:
    """What one consumer did: count and time from its first observed progress to N."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.first_n = self.seen = 0.0
        self.elapsed = 0.0
        self.cpu_s = 0.0
        self.peak_mb = 0.0
        self.complete = False

    @property
    def timed(self) -> float:
        return self.seen - self.first_n

    @property
    def rate(self) -> float:
        return self.timed / self.elapsed if self.elapsed > 0 else 0.0


def follow(n: int, pid: int, progress: Callable[[], float], timeout_s: float, alive: Callable[[], bool],
           poll_s: float = POLL_S) -> Timed:
    """Poll `progress()` every `poll_s` until it reaches n (or the deadline): time and CPU of
    `pid` from the first poll that shows progress."""
    res = Timed(n)
    cpu = CpuMeter({"p": pid})
    first_t = 0.0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        t = time.perf_counter()
        try:
            res.seen = progress()
        except OSError:
            res.seen = res.seen
        if res.seen and not first_t:
            first_t, res.first_n = t, res.seen
            cpu.start()
        if res.seen >= n:
            res.complete = True
            break
        if not alive():
            break
        time.sleep(poll_s)
    if first_t:
        res.elapsed = time.perf_counter() - first_t
        cpu.stop()
        res.cpu_s = cpu.seconds["p"]
    res.peak_mb = peak_mb(pid)
    return res


def _produce(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> float:
    from bench.ingest import _produce as produce

    t0 = time.perf_counter()
    asyncio.run(produce(bootstrap, topic, msgs))
    return len(msgs) / (time.perf_counter() - t0)


def _faust(ctx: Context, stack: EmbeddedStack, mode: str, n: int, timeout_s: float) -> Timed:
    progress = stack.workdir / f"faust-{mode}.progress"
    app_id = f"bench-faust-{mode}-{os.getpid()}-{int(time.time())}"
    child = Child(f"faust-{mode}", [sys.executable, "-m", "bench.scoring", "faust", mode,
                                    "--bootstrap", stack.config.kafka.bootstrap_servers, "--topic", BASE_TOPIC,
                                    "--app-id", app_id, "--progress", str(progress),
                                    "--datadir", str(stack.workdir / f"faust-{mode}-data")],
                  stack.logdir / f"faust-{mode}.log").start()
    try:
        def count() -> float:
            return float(progress.read_text() or 0) if progress.exists() else 0.0

        res = follow(n, child.proc.pid, count, timeout_s, lambda: child.alive)  # type: ignore[union-attr]
    finally:
        child.stop()
    if not res.complete:
        ctx.log(f"faust {mode}: {res.seen:,.0f} of {n:,} (see {stack.logdir / f'faust-{mode}.log'})")
    return res


# --- the same worker, every cell with a full history ---------------------------------------------
HISTORY_RATE = 0.5       # reports a day per cell in the backfilled history (Poisson)
CHANGELOG = "pantau-scoring-baselines-changelog"


def history_messages(sc, now: float, seed: int = 1302) -> list[dict]:
    """`pantau.scoring.backfill` messages giving every kabupaten/kota × category the closed
    buckets the live method keeps, each a Poisson(HISTORY_RATE) count."""
    import random
    from collections import Counter

    from services.scoring.backfill import Aggregate, messages as backfill_messages
    from services.scoring.baseline import bucket_start
    from services.scoring.evaluate import poisson
    from shared.regions import registry
    from shared.categories import CATEGORIES

    rng = random.Random(seed)
    agg = Aggregate()
    for region in registry().codes(2):
        today = bucket_start(now, region, sc.size)
        for category in CATEGORIES:
            counts = Counter({today - d * sc.size: float(n) for d in range(1, sc.history + 1)
                              if (n := poisson(rng, HISTORY_RATE))})
            agg.weighted[(region, category)] = counts
            agg.reports[(region, category)] = Counter(counts)
            start = today - sc.history * sc.size
            agg.first = start if agg.first is None else min(agg.first, start)
    return backfill_messages(agg, sc, now)


def _applied(bootstrap: str, ends: dict[int, int], timeout_s: float) -> bool:
    """Whether the worker has written its backfill progress (`~backfill|<p>` in the changelog)
    up to each partition's last backfill offset within `timeout_s`."""
    from aiokafka import AIOKafkaConsumer

    async def wait() -> bool:
        c = AIOKafkaConsumer(CHANGELOG, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False)
        await c.start()
        done: dict[int, int] = {}
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for msgs in (await c.getmany(timeout_ms=500)).values():
                    for m in msgs:
                        if m.key and m.key.startswith(b"~backfill|") and m.value:
                            done[int(m.key.split(b"|")[1])] = int(m.value)
                if all(done.get(p, -1) >= end for p, end in ends.items()):
                    return True
            return False
        finally:
            await c.stop()

    return asyncio.run(wait())


def _with_history(ctx: Context, stack: EmbeddedStack, port: int, pid: int, alive: Callable[[], bool],
                  before: float) -> Timed | None:
    """Backfill every cell's whole history, wait until the worker has applied it, then time one
    report per cell through the live method with those histories (CPU and peak memory)."""
    from cli.backfill import deliver, end_offsets
    from services.scoring.baseline import Scoring

    sc = Scoring.from_settings(stack.config.scoring)
    msgs = history_messages(sc, time.time())
    ctx.log(f"scoring: backfilling {len(msgs):,} cells with {sc.history} days of history each")
    asyncio.run(deliver(stack.config, msgs))

    if not _applied(stack.config.kafka.bootstrap_servers, asyncio.run(end_offsets(stack.config)), 300):
        ctx.log("scoring: the backfilled history was not applied within 300 s")
        return None
    cells = len(msgs)
    second = messages("history", cells)
    _produce(stack.config.kafka.bootstrap_servers, topics.REPORTS_V1, second)
    return follow(int(before) + cells, pid, lambda: _scored(scrape(port)), max(60.0, cells / 200), alive,
                  SCORING_POLL_S)


def _scored(text: str) -> float:
    return sum(metric(text, "pantau_scoring_reports_total", outcome=o) for o in FINAL)


def run(ctx: Context) -> list[Row]:
    n = N_QUICK if ctx.budget.name == "quick" else N_FULL
    timeout_s = max(60.0, n / 400)
    ctx.setup += [
        f"**scoring**: {n:,} enriched reports (the `pantau.reports.v1` value: ReportEvent + received_at + "
        "ingest_id, keyed by kabupaten/kota, occurred_at within the region's local today) spread over the 514 "
        "kabupaten/kota × 9 categories are produced before the consumer starts; one scoring worker "
        "(`python -m services.scoring`, durable baseline cells) then reads them, and the rate counts from its "
        f"first finished batch (group join and recovery excluded) until `pantau_scoring_reports_total` (polled "
        f"every {SCORING_POLL_S:g} s, outcomes {', '.join(FINAL)}) reaches {n:,}. Baselines, the same messages on a "
        f"per-run topic with {PARTITIONS} partitions, each a Faust app in its own process with the worker's "
        f"group settings (session timeout, heartbeat, offset reset) and event loop (uvloop) but Faust's own "
        f"1,500 ms fetch wait (the worker shortens it to 50 ms), timed the same way from their own count (a file it rewrites every {POLL_S:g} s, read as "
        "often): **ceiling** = a per-event agent that only "
        "decodes the JSON (Faust's per-event ceiling); **naive** = a per-event agent doing `table[key] += 1` "
        "on a changelog-backed table. Targets: scoring ≥ "
        f"{TARGET_VS_CEILING:g} × ceiling, ≥ {TARGET_VS_NAIVE:g} × naive, peak RSS (VmHWM) < {TARGET_PEAK_MB:g} MB.",
    ]
    with stack_with_scoring(ctx.keep) as stack:
        bootstrap = stack.config.kafka.bootstrap_servers
        ctx.log(f"scoring: producing {n:,} reports to {topics.REPORTS_V1} and {BASE_TOPIC}")
        msgs = messages("scoring", n)
        create_topic(bootstrap, BASE_TOPIC)
        produce_rate = _produce(bootstrap, BASE_TOPIC, msgs)
        _produce(bootstrap, topics.REPORTS_V1, msgs)
        del msgs

        ctx.log("scoring: faust ceiling (decode only)")
        ceiling = _faust(ctx, stack, "decode", n, timeout_s)
        ctx.log(f"scoring: ceiling {ceiling.rate:,.0f} reports/s; faust naive table")
        naive = _faust(ctx, stack, "naive", n, timeout_s)
        ctx.log(f"scoring: naive {naive.rate:,.0f} reports/s; pantau")

        child = stack.start_service("scoring", wait=True)
        port = stack.config.scoring.web_port
        pid = child.proc.pid  # type: ignore[union-attr]
        with sampled(pid, ctx.profile_dir, "scoring"):
            pantau = follow(n, pid, lambda: _scored(scrape(port)), timeout_s, lambda: child.alive,
                            SCORING_POLL_S)
        final = scrape(port) if child.alive else ""
        pantau.peak_mb = peak_mb(pid) or pantau.peak_mb
        ctx.log(f"scoring: pantau {pantau.rate:,.0f} reports/s, peak {pantau.peak_mb:.0f} MB")
        full = _with_history(ctx, stack, port, pid, lambda: child.alive, _scored(final)) if final else None
        if full is not None:
            full.peak_mb = peak_mb(pid) or full.peak_mb

    outcomes = {o: metric(final, "pantau_scoring_reports_total", outcome=o)
                for o in (*FINAL, "redelivered", "ahead")}
    common = [
        f"{n:,} reports (pre-produced at {produce_rate:,.0f}/s); scoring timed over {pantau.timed:,.0f} in "
        f"{pantau.elapsed:.1f} s, ceiling over {ceiling.timed:,.0f} in {ceiling.elapsed:.1f} s, naive over "
        f"{naive.timed:,.0f} in {naive.elapsed:.1f} s",
        "scoring outcomes: " + ", ".join(f"{o} {v:,.0f}" for o, v in outcomes.items() if v)
        + f"; its /metrics at the end: {len(final):,} bytes, "
          f"{sum(1 for ln in final.splitlines() if ln.startswith('pantau_region_level{')):,} pantau_region_level series",
        f"cores busy in the timed window: scoring {pantau.cpu_s / pantau.elapsed if pantau.elapsed else 0:.2f}, "
        f"ceiling {ceiling.cpu_s / ceiling.elapsed if ceiling.elapsed else 0:.2f}, "
        f"naive {naive.cpu_s / naive.elapsed if naive.elapsed else 0:.2f}",
    ]
    for name, r in (("scoring", pantau), ("ceiling", ceiling), ("naive", naive)):
        if not r.complete:
            common.append(f"{name} TIMED OUT or exited after {timeout_s:g} s with {r.seen:,.0f} of {n:,}")

    def per(r: Timed) -> float | None:
        return 1e6 * r.cpu_s / r.timed if r.timed else None

    rows = [
        Row("scoring vs Faust ceiling (agent that only decodes)", "reports/s", pantau.rate, ceiling.rate,
            TARGET_VS_CEILING * ceiling.rate, cpu_us=per(pantau), base_cpu_us=per(ceiling),
            notes=[f"scoring / ceiling = {pantau.rate / ceiling.rate if ceiling.rate else 0:.2f} "
                   f"(target ≥ {TARGET_VS_CEILING:g})", *common]),
        Row("scoring vs naive Faust table (`table[key] += 1` per event)", "reports/s", pantau.rate, naive.rate,
            TARGET_VS_NAIVE * naive.rate, cpu_us=per(pantau), base_cpu_us=per(naive),
            notes=[f"scoring / naive = {pantau.rate / naive.rate if naive.rate else 0:.2f} "
                   f"(target ≥ {TARGET_VS_NAIVE:g})"]),
        Row("scoring peak memory (VmHWM; baseline: naive Faust app)", "MB", pantau.peak_mb, naive.peak_mb,
            TARGET_PEAK_MB, lower_is_better=True,
            notes=[f"peak RSS: scoring {pantau.peak_mb:.0f} MB, ceiling app {ceiling.peak_mb:.0f} MB, naive app "
                   f"{naive.peak_mb:.0f} MB (target < {TARGET_PEAK_MB:g} MB)"]),
    ]
    method = stack.config.scoring.method
    if full is not None and full.complete:
        rows += [
            Row(f"scoring with every cell's full history ({method}) vs Faust ceiling", "reports/s", full.rate,
                ceiling.rate, None, cpu_us=per(full), base_cpu_us=per(ceiling),
                notes=[f"after the run above, every one of the 4,626 cells backfilled with its whole ring of closed "
                       f"days (Poisson {HISTORY_RATE:g} a day), then one report per cell: the live method reads real "
                       f"histories (the first run's cells have none and use the cold-start prior); timed over "
                       f"{full.timed:,.0f} reports in {full.elapsed:.1f} s"]),
            Row(f"scoring peak memory, every cell with its full history ({method})", "MB", full.peak_mb,
                naive.peak_mb, TARGET_PEAK_MB, lower_is_better=True,
                notes=[f"peak RSS of the same worker after the history phase (target < {TARGET_PEAK_MB:g} MB)"]),
        ]
    elif final:
        common.append("the history phase did not finish: no rows for it")
    return rows


# --- the Faust baselines, one per process --------------------------------------------------------
def faust_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scoring faust")
    ap.add_argument("mode", choices=("decode", "naive"))
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--app-id", required=True)
    ap.add_argument("--progress", type=Path, required=True)
    ap.add_argument("--datadir", required=True)
    args = ap.parse_args(argv)

    import faust
    import uvloop

    # On the event loop the scoring worker runs on, so the ratio compares the work, not the loop.
    uvloop.install()
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = faust.App(
        args.app_id,
        broker=[f"kafka://{b.strip()}" for b in args.bootstrap.split(",")],
        store="memory://",
        topic_partitions=PARTITIONS,
        key_serializer="raw",
        value_serializer="json",
        broker_session_timeout=6,  # measured.md: else the first event comes after ~30 s
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        datadir=args.datadir,
    )
    source = app.topic(args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    counts = app.Table("counts", default=int, partitions=PARTITIONS, key_type=bytes, value_type=int) \
        if args.mode == "naive" else None
    state = {"n": 0, "written": -1}

    if counts is None:
        @app.agent(source)
        async def decode(stream):  # type: ignore[no-untyped-def]
            async for value in stream:
                orjson.loads(value)
                state["n"] += 1
    else:
        @app.agent(source)
        async def naive(stream):  # type: ignore[no-untyped-def]
            async for key, value in stream.items():
                orjson.loads(value)
                counts[key] += 1
                state["n"] += 1

    tmp = args.progress.with_suffix(".tmp")

    @app.timer(POLL_S)
    async def report() -> None:
        if state["n"] != state["written"]:
            tmp.write_text(str(state["n"]))
            os.replace(tmp, args.progress)
            state["written"] = state["n"]

    worker = faust.Worker(app, loglevel="warn", quiet=True)
    worker.spinner = None
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["faust"]:
        sys.exit(faust_main(sys.argv[2:]))
    print("usage: python -m bench.scoring faust {decode|naive} ...", file=sys.stderr)
    sys.exit(2)
