"""`python -m bench.soak` (`make soak`): the whole pipeline at a steady rate for a long while
(10 minutes by default), sampling every service's resident memory and every consumer
group's lag, to show that neither grows. Not part of `make bench` and not for CI.

    python -m bench.soak [--minutes 10] [--rate 100] [--sample-s 10] [--raw-share 0.1] [--out FILE]

- Load: an open-loop schedule (bench.openloop) of POST /v1/reports at `--rate`, reports on
  kecamatan all over Indonesia, every category, mostly severity 1-3 and one in 50 severity 5,
  so cells fill, levels rise, incidents open and page (inhibition as configured by default);
  beside it `--raw-share` of the rate produced to pantau.reports.raw, so the validator works too.
- Every `--sample-s`: VmRSS of each process (gateway, validator, scoring, notify, broker, Redis,
  webhook receiver), and consumer lag per group two ways: `pantau_consumer_lag_messages`
  summed from the services' /metrics ("metrics": what each service says of itself), and the
  broker's end offsets minus the group's committed offsets ("committed": what the broker
  says; scoring, notify and the validator; notify's watchdog keeps its positions in Redis, not
  in a group, so only its metric shows its lag).
- At the end: the series as a table, and per series the least-squares slope per minute over
  the whole run and over its second half (start-up growth is in the first half); flat means
  a slope near 0 MB/min and lag that stays near 0 messages. Written to bench/results/soak.md
  with the date, commit and machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from bench import workload
from bench.openloop import OpenSpec, pct, start_open
from bench.pipeline import HEADERS, PAGE_PATH, pids, pipeline_stack
from bench.report import cpu_model, git_commit, load_average, usable_cores
from bench.stack import rss_mb, scrape

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PAGE_EVERY = 50


def _raw_feed(bootstrap: str, rate: float, seconds: float, tag: str) -> int:
    """Produce reports to pantau.reports.raw at `rate` for `seconds` (its own process)."""
    import uvloop

    from shared import topics

    async def go() -> int:
        from aiokafka import AIOKafkaProducer

        from shared.kafka import producer_settings

        msgs = workload.mixed_requests(tag, 0, max(1, int(rate * seconds)), PAGE_EVERY)
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings(10))
        await p.start()
        sent = 0
        try:
            start = time.perf_counter()
            for i, (_, body) in enumerate(msgs):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                import orjson

                await p.send(topics.REPORTS_RAW, body, key=orjson.loads(body)["region_code"].encode())
                sent += 1
            await p.flush()
        finally:
            await p.stop()
        return sent

    return uvloop.run(go())


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    if sxx == 0:
        return None
    return 60 * sum((t - mx) * (v - my) for t, v in points) / sxx


def _lags(stack) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Consumer lag summed per group, from each consuming service's /metrics."""
    cfg = stack.config
    ports = {"ingest-validator": cfg.ingest.metrics_port, "scoring": cfg.scoring.web_port, "notify": cfg.notify.metrics_port}
    out: dict[str, float] = {}
    for name, port in ports.items():
        try:
            text = scrape(port)
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("pantau_consumer_lag_messages{"):
                series, _, value = line.rpartition(" ")
                group = series.split('group="', 1)[1].split('"', 1)[0]
                out[group] = out.get(group, 0.0) + float(value)
    return out


async def _committed_lag(bootstrap: str, groups: dict[str, tuple[str, ...]]) -> dict[str, float]:
    """Lag per group as the broker sees it: end offset minus the group's committed offset on
    each partition of its topics (a partition with no commit yet counts from 0). Tansu 0.6
    answers a partition's end offset as the base offset of its last record batch + 1, so this
    can read a few messages low. (aiokafka's admin OffsetFetch fails against Tansu; a
    consumer's `committed()` works.)"""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    out: dict[str, float] = {}
    for group, group_topics in groups.items():
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            await c.topics()
            tps = [TopicPartition(t, p) for t in group_topics for p in sorted(c.partitions_for_topic(t) or ())]
            ends = await c.end_offsets(tps)
            total = 0
            for tp in tps:
                total += max(0, ends[tp] - (await c.committed(tp) or 0))
            out[group] = float(total)
        finally:
            await c.stop()
    return out


def _broker_lags(stack) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from shared import topics

    cfg = stack.config
    groups = {cfg.ingest.validator_group: (topics.REPORTS_RAW,),
              "pantau-scoring": (topics.REPORTS_V1, topics.SCORING_PROVINCE),
              cfg.notify.consumer_group: (topics.SCORES_V1,)}
    try:
        return asyncio.run(_committed_lag(cfg.kafka.bootstrap_servers, groups))
    except Exception as e:  # noqa: BLE001 — a sample is skipped, the soak goes on
        print(f"soak: broker lag not read ({type(e).__name__}: {e})", flush=True)
        return {}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=100.0, help="reports per second over HTTP")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--raw-share", type=float, default=0.1, help="extra reports on the raw topic, as a share of --rate")
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.md")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)

    seconds = args.minutes * 60
    n = int(args.rate * seconds)
    load_before = load_average()
    started = datetime.now(timezone.utc)
    samples: list[dict] = []
    print(f"soak: {args.minutes:g} min at {args.rate:g} reports/s over HTTP (+{args.rate * args.raw_share:g}/s raw), "
          f"sampling every {args.sample_s:g} s", flush=True)
    with pipeline_stack(args.keep, prefix="pantau-bench-soak-") as (stack, receiver):
        procs = {**pids(stack), "receiver": receiver.pid}
        spec = OpenSpec("127.0.0.1", stack.config.ingest.port, "/v1/reports", HEADERS,
                        partial(workload.mixed_requests, "soak", 0, n, PAGE_EVERY), args.rate, max_connections=512)
        pool, fut = start_open(spec)
        raw_pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        raw_fut = raw_pool.submit(_raw_feed, stack.config.kafka.bootstrap_servers, args.rate * args.raw_share,
                                  seconds, "soak-raw") if args.raw_share > 0 else None
        t0 = time.monotonic()
        names = list(procs)
        header = "  t(s)  " + " ".join(f"{k[:10]:>10}" for k in names) + "   lag by group"
        print(header, flush=True)
        while True:
            t = time.monotonic() - t0
            lag = {f"{g} (metrics)": v for g, v in _lags(stack).items()}
            lag.update({f"{g} (committed)": v for g, v in _broker_lags(stack).items()})
            row = {"t": t, "rss": {k: rss_mb(p) for k, p in procs.items()}, "lag": lag, "pages": receiver.count()}
            samples.append(row)
            print(f"{t:6.0f}  " + " ".join(f"{row['rss'][k]:>10.0f}" for k in names) + "   "
                  + ", ".join(f"{g} {v:,.0f}" for g, v in row["lag"].items()), flush=True)
            if fut.done() or t > seconds + 120:
                break
            time.sleep(max(0.0, args.sample_s - ((time.monotonic() - t0) % args.sample_s)))
        res = fut.result(timeout=120)
        pool.shutdown()
        raw_sent = raw_fut.result(timeout=120) if raw_fut is not None else 0
        raw_pool.shutdown()
        crashed = stack.crashed()
        pages = [p for p in receiver.stop() if p.get("path") == PAGE_PATH]

    text = report(args, samples, res, raw_sent, len(pages), crashed, started, load_before)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print()
    print(text.split("## Series", 1)[0])
    print(f"soak: written to {args.out}")
    return 0


def report(args, samples, res, raw_sent, pages, crashed, started, load_before) -> str:  # type: ignore[no-untyped-def]
    names = list(samples[0]["rss"]) if samples else []
    groups = sorted({g for s in samples for g in s["lag"]})
    half = samples[len(samples) // 2:]
    statuses: dict[int, int] = {}
    for _, _, _, st in res.sent:
        statuses[st] = statuses.get(st, 0) + 1
    lat = res.latencies_ms()

    def fmt(x: float | None, unit: str) -> str:
        return "—" if x is None else f"{x:+.2f} {unit}/min"

    lines = [
        "# Pantau soak run",
        "",
        f"- date: {started.isoformat(timespec='seconds')}",
        f"- commit: {git_commit(REPO)}",
        f"- machine: {cpu_model()}, {usable_cores()} cores; load average before: {load_before}, after: {load_average()}",
        f"- load: {args.minutes:g} min, open-loop POST /v1/reports at {args.rate:g}/s (one in {PAGE_EVERY} severity 5) "
        f"and {args.rate * args.raw_share:g}/s on pantau.reports.raw; sampled every {args.sample_s:g} s",
        f"- sent {len(res.sent):,} over HTTP (answers {statuses}, {res.late_starts:,} waited for a connection; POST → "
        f"202 p50 {pct(lat, 0.5) or 0:.0f} ms, p99 {pct(lat, 0.99) or 0:.0f} ms), {raw_sent:,} on the raw topic; "
        f"{pages:,} pages received",
    ]
    if crashed:
        lines.append(f"- **exited during the run: {', '.join(crashed)}**")
    lines += ["", "| series | first | last | max | slope, whole run | slope, second half |", "|---|---:|---:|---:|---:|---:|"]
    for k in names:
        pts = [(s["t"], s["rss"][k]) for s in samples]
        lines.append(f"| RSS {k} (MB) | {pts[0][1]:.0f} | {pts[-1][1]:.0f} | {max(v for _, v in pts):.0f} | "
                     f"{fmt(slope_per_min(pts), 'MB')} | {fmt(slope_per_min([(s['t'], s['rss'][k]) for s in half]), 'MB')} |")
    for g in groups:
        pts = [(s["t"], s["lag"].get(g, 0.0)) for s in samples]
        lines.append(f"| lag {g} (messages) | {pts[0][1]:,.0f} | {pts[-1][1]:,.0f} | {max(v for _, v in pts):,.0f} | "
                     f"{fmt(slope_per_min(pts), 'msg')} | "
                     f"{fmt(slope_per_min([(s['t'], s['lag'].get(g, 0.0)) for s in half]), 'msg')} |")
    lines += ["", "## Series", "", "| t (s) | " + " | ".join(f"{k} MB" for k in names) + " | "
              + " | ".join(f"lag {g}" for g in groups) + " | pages |",
              "|" + "---:|" * (2 + len(names) + len(groups))]
    for s in samples:
        lines.append(f"| {s['t']:.0f} | " + " | ".join(f"{s['rss'][k]:.0f}" for k in names) + " | "
                     + " | ".join(f"{s['lag'].get(g, 0.0):,.0f}" for g in groups) + f" | {s['pages']:,} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
