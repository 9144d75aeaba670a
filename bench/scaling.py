"""The scaling stage (issue 18, item 5): what 1, 2, 4 and 8 scoring workers, and 1, 2, 4 and 8
notify workers, do on one machine, with the partition as the unit of work.

- Topics have 8 partitions here (the bench's other stages use 4), so that up to 8 workers each
  own at least one; a ninth would sit idle. Each count of workers gets a fresh broker and Redis.
- Each worker is pinned with `taskset -c` to one core, worker i to core i mod (cores): with 2
  cores, 1 and 2 workers have a core each, 4 workers half a core each and 8 a quarter. Broker,
  Redis and the load generator are not pinned and share both cores with them, and so does
  whatever else runs on the machine (its load average is in the notes). On 2 cores, 4 and 8
  workers say what a partition costs when workers share cores, not what 8 cores would do.
- Scoring: N reports are produced to `pantau.reports.v1`, then the k workers start; the rate
  counts from the poll at which every worker has counted some (all have joined and hold
  partitions) to the N-th, from the workers' summed
  `pantau_scoring_reports_total`. Scoring keeps no state in Redis (its cells are Faust tables
  with changelogs), so the broker and partitions bound it, not Redis. Baseline: a raw aiokafka
  consumer (getmany, JSON decode, a dict count per (region, category), commit per batch) of the
  same N reports, pinned to core 0: the ceiling of any consumer here.
- Notify: bench/scaling_notify.py, with Redis's own counters (INFO commandstats) to say where
  Redis becomes the limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import orjson

from bench import scaling_notify
from bench.context import Context
from bench.cpu import cpu_seconds
from bench.report import Row, load_average
from bench.scoring import N_FULL, N_QUICK, SCORING_POLL_S, _produce, _scored, messages, stack_with_scoring
from bench.stack import create_topic, peak_mb, scrape
from cli.stack import SERVICES, Child, EmbeddedStack, free_port, wait_port
from shared import topics

# Issue 18's moonshot: one durable worker at least this share of the raw consumer's rate.
TARGET_VS_RAW = 0.25
PARTITIONS = 8
WORKERS = (1, 2, 4, 8)
WORKERS_QUICK = (1, 2)
RAW_TOPIC = "bench.scaling.raw"


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def pinned(i: int, argv: list[str]) -> list[str]:
    """`argv` under `taskset -c` on core i mod (cores the bench may use)."""
    cs = cores()
    return ["taskset", "-c", str(cs[i % len(cs)]), *argv]


def share(k: int) -> float:
    """The core share each of k pinned workers gets at most (before broker and Redis take theirs)."""
    return min(1.0, len(cores()) / k)


def scoring_workers(stack: EmbeddedStack, k: int) -> list[tuple[Child, int]]:
    """Start k pinned scoring workers on one config: each with its own web port (`--web-port`,
    which also keys its Faust datadir) and its own TMPDIR."""
    out = []
    for i in range(k):
        port = stack.config.scoring.web_port if i == 0 else free_port()
        tmp = stack.workdir / f"tmp-{i}"
        tmp.mkdir(exist_ok=True)
        child = Child(f"scoring-{i}", pinned(i, [sys.executable, *SERVICES["scoring"], "--web-port", str(port)]),
                      stack.logdir / f"scoring-{i}.log",
                      env={"PANTAU_CONFIG": str(stack.config_path), "TMPDIR": str(tmp)}).start()
        stack.children[f"scoring-{i}"] = child
        out.append((child, port))
    for child, port in out:
        wait_port("127.0.0.1", port, 120, child.proc, child.name)
    return out


def _counts(ws: list[tuple[Child, int]], per: dict[str, float]) -> float:
    for child, port in ws:
        try:
            per[child.name] = _scored(scrape(port))
        except OSError:
            per.setdefault(child.name, 0.0)
    return sum(per.values())


def _raw_baseline(ctx: Context, bootstrap: str, n: int, timeout_s: float) -> dict:
    create_topic(bootstrap, RAW_TOPIC, PARTITIONS)
    _produce(bootstrap, RAW_TOPIC, messages("raw", n))
    ctx.log("scaling: raw aiokafka consumer, pinned to one core")
    out = subprocess.run(pinned(0, [sys.executable, "-m", "bench.baselines", "consume", "--bootstrap", bootstrap,
                                    "--topic", RAW_TOPIC, "--group", "bench-raw", "--n", str(n),
                                    "--timeout", str(timeout_s)]),
                         capture_output=True, text=True, timeout=timeout_s + 60)
    if out.returncode != 0:
        raise RuntimeError(f"baseline consume failed:\n{out.stderr[-3000:]}")
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def _scoring_round(ctx: Context, k: int, n: int, timeout_s: float, with_baseline: bool) -> tuple[dict, dict | None]:
    with stack_with_scoring(ctx.keep, f"scaling-{k}w", partitions=PARTITIONS) as stack:
        bootstrap = stack.config.kafka.bootstrap_servers
        base = _raw_baseline(ctx, bootstrap, n, timeout_s) if with_baseline else None
        load = load_average()
        # Faust creates these at start; k workers starting at once race to create them, and one
        # may see a partial partition list and crash on its first tick ("Unrecognized partition").
        for t in (topics.SCORING_TICKS, topics.SCORING_PROVINCE, topics.SCORING_BACKFILL):
            create_topic(bootstrap, t, PARTITIONS)
        _produce(bootstrap, topics.REPORTS_V1, messages(f"scale{k}", n))
        ctx.log(f"scaling: {k} scoring worker{'s' if k > 1 else ''} ({share(k):.2f} core each)")
        ws = scoring_workers(stack, k)
        per: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        # Settled: every worker has counted some, so each holds partitions (k <= partitions).
        while time.monotonic() < deadline and (_counts(ws, per) == 0 or min(per.values()) == 0):
            if not all(c.alive for c, _ in ws):
                break
            time.sleep(SCORING_POLL_S)
        settled = min(per.values()) > 0
        t0 = time.perf_counter()
        first = sum(per.values())
        infra = {n: stack.children[n].proc.pid for n in ("broker", "redis")}  # type: ignore[union-attr]
        cpu0 = {c.name: cpu_seconds(c.proc.pid) for c, _ in ws}  # type: ignore[union-attr]
        cpu0 |= {n: cpu_seconds(pid) for n, pid in infra.items()}
        seen = first
        while time.monotonic() < deadline and seen < n and all(c.alive for c, _ in ws):
            time.sleep(SCORING_POLL_S)
            seen = _counts(ws, per)
        elapsed = time.perf_counter() - t0
        cpu = {c.name: cpu_seconds(c.proc.pid) - cpu0[c.name] for c, _ in ws}  # type: ignore[union-attr]
        infra_cpu = {n: cpu_seconds(pid) - cpu0[n] for n, pid in infra.items()}
        hwm = {c.name: peak_mb(c.proc.pid) for c, _ in ws}  # type: ignore[union-attr]
        crashed = stack.crashed()
    timed = seen - first
    return {"rate": timed / elapsed if elapsed > 0 else 0.0, "timed": timed, "elapsed": elapsed,
            "complete": seen >= n, "seen": seen, "first": first, "settled": settled, "per": per, "cpu": cpu,
            "hwm": hwm, "crashed": crashed, "load": load, "infra": infra_cpu}, base


def _scoring_rows(ctx: Context, n: int, counts: tuple[int, ...]) -> list[Row]:
    timeout_s = max(90.0, n / 300)
    rounds: dict[int, dict] = {}
    base: dict | None = None
    for k in counts:
        rounds[k], b = _scoring_round(ctx, k, n, timeout_s, with_baseline=base is None)
        base = base or b
        ctx.log(f"scaling: {k} scoring worker(s) {rounds[k]['rate']:,.0f} reports/s")
    assert base is not None
    base_cpu = 1e6 * base["cpu_s"] / base["timed"] if base["timed"] else None
    rows = []
    for k, r in rounds.items():
        cpu_s = sum(r["cpu"].values())
        notes = [
            f"{share(k):.2f} core per worker (taskset); timed over {r['timed']:,.0f} of {n:,} in {r['elapsed']:.1f} s; "
            f"{r['rate'] / k:,.0f} reports/s per worker, {r['rate'] / rounds[1]['rate'] if rounds[1]['rate'] else 0:.2f}× "
            f"one worker; load average before: {r['load']}",
            f"settled (every worker counting) at {r['first']:,.0f}; reports per worker: " + ", ".join(f"{w} {v:,.0f}" for w, v in r["per"].items())
            + "; cores busy: " + ", ".join(f"{w} {s / r['elapsed'] if r['elapsed'] else 0:.2f}" for w, s in r["cpu"].items())
            + "".join(f", {w} {s / r['elapsed'] if r['elapsed'] else 0:.2f}" for w, s in r["infra"].items())
            + f" (broker {1e6 * r['infra']['broker'] / r['timed'] if r['timed'] else 0:,.0f} µs per report)"
            + "; peak RSS: " + ", ".join(f"{w} {v:.0f} MB" for w, v in r["hwm"].items()),
        ]
        if k == 1:
            notes.append(f"raw consumer (one core): {base['timed']:,} in {base['elapsed_s']:.2f} s, "
                         f"{base['cpu_s'] / base['elapsed_s'] if base['elapsed_s'] else 0:.2f} cores, "
                         f"peak {base['peak_mb']:.0f} MB")
        if not r["settled"]:
            notes.append("a worker had counted nothing after the warm-up: the group had not settled")
        if not r["complete"]:
            notes.append(f"TIMED OUT or a worker exited with {r['seen']:,.0f} of {n:,}")
        if r["crashed"]:
            notes.append(f"exited during the run: {', '.join(r['crashed'])}")
        rows.append(Row(f"scoring, {k} worker{'s' if k > 1 else ''} vs raw aiokafka consumer", "reports/s", r["rate"],
                        base["rate"], None, cpu_us=1e6 * cpu_s / r["timed"] if r["timed"] else None,
                        base_cpu_us=base_cpu, notes=notes, ratio_target=TARGET_VS_RAW if k == 1 else None))
    return rows


def run(ctx: Context) -> list[Row]:
    quick = ctx.budget.name == "quick"
    n = N_QUICK if quick else 4 * N_FULL
    counts = WORKERS_QUICK if quick else WORKERS
    ctx.setup += [
        f"**scaling**: topics with {PARTITIONS} partitions; k = {', '.join(map(str, counts))} workers, each pinned "
        f"with `taskset -c` to core i mod {len(cores())} (so {', '.join(f'{share(k):.2f}' for k in counts)} core per "
        "worker at most; broker, Redis and load generator unpinned, sharing the same cores), a fresh broker and "
        f"Redis for each k. Scoring: {n:,} enriched reports (the scoring stage's "
        "workload) are produced, then the k workers start; the rate counts from the poll at which every worker "
        "has counted some (all joined, each holding partitions) to the last report, from the workers' summed "
        "counters. Scoring's internal topics are created before the workers start (started together, they "
        "race to create them). "
        "Baseline: a raw aiokafka consumer (getmany, JSON decode and a dict count per (region, category) per "
        "message, commit per batch) of the same number of messages, pinned to one core. "
        + scaling_notify.SETUP,
    ]
    rows = _scoring_rows(ctx, n, counts)
    rows += scaling_notify.rows(ctx, counts, PARTITIONS, pinned, share)
    return rows
