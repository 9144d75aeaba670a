"""Notify's half of the scaling stage: k notify workers (k = 1, 2, 4, 8), each pinned to a core,
sharing one Redis and one webhook receiver, and what Redis does per page.

- Each worker is `python -m services.notify` with its own copy of the pipeline's config that
  differs only in its ports (API and metrics). They split `pantau.scores.v1` (8 partitions)
  in one consumer group; escalation timers and deliveries are shared through Redis leases.
- Workload: the deliveries stage's, `awas` score updates for distinct cells, each opening an
  incident and paging one contact through a webhook answering at once. A warm-up of W updates
  is paged first (every worker joined and working), then N more; the rate counts at the
  receiver from the first of the N pages to the last.
- Redis: INFO commandstats and INFO stats before and after the N, and Redis's CPU time from
  /proc: commands per page, Redis CPU per page, and the commands Redis spends most time on.
  Redis runs commands on one thread, so 1 / (Redis CPU per page) is the page rate at which
  Redis alone fills a core: the limit that more notify workers cannot pass.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from bench.context import Context
from bench.cpu import cpu_seconds
from bench.deliveries import score_updates
from bench.pipeline import pipeline_stack
from bench.report import Row, load_average
from bench.stack import metric, peak_mb, scrape
from cli.stack import SERVICES, Child, EmbeddedStack, free_port, wait_port
from shared import topics

WARMUP = 200
N_FULL, N_QUICK = 3_000, 300
SETUP = (
    f"Notify: k notify workers (own ports, one consumer group, one Redis) paging one webhook receiver that "
    f"answers at once; a warm-up of {WARMUP} `awas` updates for distinct cells is paged first, then {N_FULL:,} more "
    f"({N_QUICK} in a quick run) are timed at the receiver; Redis's INFO commandstats and its process CPU before and after give commands "
    "and Redis CPU per page, and 1 / (Redis CPU per page) the page rate at which Redis alone fills its one "
    "core. Baseline of each notify row: one notify worker in the same stage."
)


def _worker_config(stack: EmbeddedStack, i: int) -> tuple[str, int]:
    """Path of worker i's config (worker 0: the stack's own) and its metrics port."""
    nc = stack.config.notify
    if i == 0:
        return str(stack.config_path), nc.metrics_port
    port, metrics_port = free_port(), free_port()
    text = stack.config_path.read_text()
    text = text.replace(f"metrics_port: {nc.metrics_port}", f"metrics_port: {metrics_port}")
    text = text.replace(f"  port: {nc.port}\n", f"  port: {port}\n").replace(f"127.0.0.1:{nc.port}\"",
                                                                             f"127.0.0.1:{port}\"")
    path = stack.workdir / f"notify-{i}.yaml"
    path.write_text(text)
    return str(path), metrics_port


def notify_workers(stack: EmbeddedStack, k: int, pinned: Callable[[int, list[str]], list[str]]) -> list[tuple[Child, int]]:
    import sys

    out = []
    for i in range(k):
        cfg, metrics_port = _worker_config(stack, i)
        child = Child(f"notify-{i}", pinned(i, [sys.executable, *SERVICES["notify"]]), stack.logdir / f"notify-{i}.log",
                      env={"PANTAU_CONFIG": cfg, **stack.service_env}).start()
        stack.children[f"notify-{i}"] = child
        out.append((child, metrics_port))
    for child, port in out:
        wait_port("127.0.0.1", port, 120, child.proc, child.name)
    return out


def redis_sample(stack: EmbeddedStack) -> dict:
    """Redis's command counters (total and per command: calls, usec) and its CPU seconds now."""
    import redis

    r = redis.Redis.from_url(stack.config.redis.url)
    try:
        stats = r.info("commandstats")
        total = r.info("stats")["total_commands_processed"]
        cpu = r.info("cpu")  # microsecond resolution, where /proc counts 10 ms ticks
    finally:
        r.close()
    per = {name.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for name, v in stats.items()}
    return {"total": total, "per": per, "cpu": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])}


def redis_delta(a: dict, b: dict) -> dict:
    per = {c: (calls - a["per"].get(c, (0, 0))[0], usec - a["per"].get(c, (0, 0))[1])
           for c, (calls, usec) in b["per"].items()}
    # The two INFO calls of the samples are Redis commands too.
    return {"ops": b["total"] - a["total"] - 2, "cpu": b["cpu"] - a["cpu"],
            "per": {c: v for c, v in per.items() if v[0] > 0 and c != "info"}}


def _round(ctx: Context, k: int, n: int, partitions: int, pinned, timeout_s: float) -> dict:
    with pipeline_stack(ctx.keep, services=(), prefix=f"pantau-bench-scaling-notify-{k}w-",
                        partitions=partitions) as (stack, receiver):
        load = load_average()
        ws = notify_workers(stack, k, pinned)
        bootstrap = stack.config.kafka.bootstrap_servers
        updates = score_updates(WARMUP + n)
        from bench.ingest import _produce

        asyncio.run(_produce(bootstrap, topics.SCORES_V1, updates[:WARMUP]))
        deadline = time.monotonic() + timeout_s
        warm = receiver.wait_count(WARMUP, timeout_s)
        r0 = redis_sample(stack)
        cpu0 = {c.name: cpu_seconds(c.proc.pid) for c, _ in ws}  # type: ignore[union-attr]
        broker = stack.children["broker"].proc.pid  # type: ignore[union-attr]
        broker0 = cpu_seconds(broker)
        asyncio.run(_produce(bootstrap, topics.SCORES_V1, updates[WARMUP:]))
        first_t, first_n, seen = 0.0, 0, 0
        while time.monotonic() < deadline:
            t = time.perf_counter()
            seen = receiver.count() - warm
            if seen > 0 and not first_t:
                first_t, first_n = t, seen
            if seen >= n or not all(c.alive for c, _ in ws):
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - first_t if first_t else 0.0
        cpu = {c.name: cpu_seconds(c.proc.pid) - cpu0[c.name] for c, _ in ws}  # type: ignore[union-attr]
        r1 = redis_sample(stack)
        broker_s = cpu_seconds(broker) - broker0
        opened = {}
        for c, port in ws:
            try:
                opened[c.name] = metric(scrape(port), "pantau_incidents_opened_total")
            except OSError:
                opened[c.name] = 0.0
        hwm = {c.name: peak_mb(c.proc.pid) for c, _ in ws}  # type: ignore[union-attr]
        crashed = stack.crashed()
        receiver.stop()
    timed = seen - first_n
    return {"rate": timed / elapsed if elapsed > 0 else 0.0, "timed": timed, "elapsed": elapsed, "seen": seen,
            "warm": warm, "cpu": cpu, "broker": broker_s, "opened": opened, "hwm": hwm, "crashed": crashed, "load": load,
            "redis": redis_delta(r0, r1)}


def _redis_note(rd: dict, pages: int) -> str:
    if not pages:
        return "Redis: no pages"
    top = sorted(rd["per"].items(), key=lambda kv: -kv[1][1])[:4]
    ceiling = pages / rd["cpu"] if rd["cpu"] > 0 else 0.0
    return (f"Redis: {rd['ops'] / pages:.1f} commands and {1e6 * rd['cpu'] / pages:,.0f} µs of its CPU per page "
            "(INFO cpu; the calls that scripts make count as commands, and their time is inside the script's); "
            f"{rd['ops'] / rd['cpu'] if rd['cpu'] > 0 else 0:,.0f} commands per Redis CPU second; Redis alone "
            f"would fill its core at ~{ceiling:,.0f} pages/s; most Redis time: "
            + ", ".join(f"{c} {calls / pages:.2f}/page at {usec / calls if calls else 0:.0f} µs" for c, (calls, usec) in top))


def rows(ctx: Context, counts: tuple[int, ...], partitions: int, pinned, share) -> list[Row]:
    n = N_QUICK if ctx.budget.name == "quick" else N_FULL
    timeout_s = max(90.0, n / 10)
    rounds = {}
    for k in counts:
        ctx.log(f"scaling: {k} notify worker{'s' if k > 1 else ''} ({share(k):.2f} core each)")
        rounds[k] = _round(ctx, k, n, partitions, pinned, timeout_s)
        ctx.log(f"scaling: {k} notify worker(s) {rounds[k]['rate']:,.0f} pages/s")
    one = rounds[counts[0]]
    out = []
    for k, r in rounds.items():
        pages = r["timed"]
        cpu_s = sum(r["cpu"].values())
        rd = r["redis"]
        notes = [
            f"{share(k):.2f} core per worker (taskset); {r['seen']:,} of {n:,} pages, timed over {pages:,} in "
            f"{r['elapsed']:.2f} s; {r['rate'] / k:,.0f} pages/s per worker; load average before: {r['load']}",
            "incidents opened per worker (warm-up included): " + ", ".join(f"{w} {v:,.0f}" for w, v in r["opened"].items())
            + "; cores busy: " + ", ".join(f"{w} {s / r['elapsed'] if r['elapsed'] else 0:.2f}" for w, s in r["cpu"].items())
            + f", redis {rd['cpu'] / r['elapsed'] if r['elapsed'] else 0:.2f}"
            + f", broker {r['broker'] / r['elapsed'] if r['elapsed'] else 0:.2f}"
            + "; peak RSS: " + ", ".join(f"{w} {v:.0f} MB" for w, v in r["hwm"].items()),
            _redis_note(rd, pages),
        ]
        if r["seen"] < n:
            notes.append(f"TIMED OUT or a worker exited with {r['seen']:,} of {n:,} pages")
        if r["crashed"]:
            notes.append(f"exited during the run: {', '.join(r['crashed'])}")
        out.append(Row(f"notify, {k} worker{'s' if k > 1 else ''} vs 1 worker, pages/s (receiver at once)", "pages/s",
                       r["rate"], one["rate"], None, cpu_us=1e6 * cpu_s / pages if pages else None,
                       base_cpu_us=1e6 * sum(one["cpu"].values()) / one["timed"] if one["timed"] else None,
                       notes=notes))
        out.append(Row(f"Redis under notify, {k} worker{'s' if k > 1 else ''}: page rate at which Redis fills a core",
                       "pages/s", pages / rd["cpu"] if rd["cpu"] > 0 else 0.0, r["rate"], None,
                       notes=[f"baseline column: the page rate measured; ratio = how far Redis is from its limit "
                              f"({1e6 * rd['cpu'] / pages if pages else 0:,.0f} µs of Redis CPU per page)"]))
    return out
