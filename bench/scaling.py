"""The scaling stage: the scoring workload of the scoring stage read by one scoring worker,
then by two (same machine, same broker), beside a raw aiokafka consumer of the same messages.

- Each run has its own broker and Redis; the N enriched reports are produced to
  `pantau.reports.v1` (4 partitions) before any consumer starts. The rate counts from the
  first finished batch to N, from the workers' `pantau_scoring_reports_total` summed over
  workers (polled every 0.5 s), as in the scoring stage.
- Two workers on one host need their own Faust data directory and web port: each gets
  `python -m services.scoring --web-port N` (the datadir is keyed by the port) and its own TMPDIR. With two cores shared by the broker, Redis and
  both workers, two workers cannot be twice one: the ratio says how much of the second core
  they get.
- Baseline: `bench.baselines consume`, an aiokafka consumer in a group doing getmany + a JSON
  decode and a dict count per (region, category) per message + a commit per batch: the
  ceiling of any consumer here. The issue's
  "distance from the limit" is scoring / raw consumer.
"""

from __future__ import annotations

import subprocess
import sys

import orjson

from bench.context import Context
from bench.cpu import cpu_seconds
from bench.report import Row
from bench.scoring import N_FULL, N_QUICK, SCORING_POLL_S, _produce, _scored, follow, messages, stack_with_scoring
from bench.stack import peak_mb, scrape
from cli.stack import SERVICES, Child, EmbeddedStack, free_port, wait_port
from shared import topics

# Issue 18's moonshot: one durable worker at least this share of the raw consumer's rate.
TARGET_VS_RAW = 0.25


def workers(stack: EmbeddedStack, k: int) -> list[tuple[Child, int]]:
    """Start k scoring workers on one config: each with its own web port (`--web-port`, which
    also keys its Faust datadir) and, to keep runs apart, its own TMPDIR."""
    out = []
    for i in range(k):
        port = stack.config.scoring.web_port if i == 0 else free_port()
        tmp = stack.workdir / f"tmp-{i}"
        tmp.mkdir(exist_ok=True)
        child = Child(f"scoring-{i}", [sys.executable, *SERVICES["scoring"], "--web-port", str(port)],
                      stack.logdir / f"scoring-{i}.log",
                      env={"PANTAU_CONFIG": str(stack.config_path), "TMPDIR": str(tmp)}).start()
        stack.children[f"scoring-{i}"] = child
        out.append((child, port))
    for child, port in out:
        wait_port("127.0.0.1", port, 90, child.proc, child.name)
    return out


def _run_workers(ctx: Context, k: int, n: int, timeout_s: float, with_baseline: bool) -> tuple[dict, dict | None]:
    with stack_with_scoring(ctx.keep, f"scaling-{k}w") as stack:
        bootstrap = stack.config.kafka.bootstrap_servers
        _produce(bootstrap, topics.REPORTS_V1, messages(f"scale{k}", n))
        base = None
        if with_baseline:
            ctx.log("scaling: raw aiokafka consumer")
            out = subprocess.run([sys.executable, "-m", "bench.baselines", "consume", "--bootstrap", bootstrap,
                                  "--topic", topics.REPORTS_V1, "--group", "bench-raw", "--n", str(n),
                                  "--timeout", str(timeout_s)], capture_output=True, text=True, timeout=timeout_s + 60)
            if out.returncode != 0:
                raise RuntimeError(f"baseline consume failed:\n{out.stderr[-3000:]}")
            base = orjson.loads(out.stdout.strip().splitlines()[-1])
        ctx.log(f"scaling: {k} scoring worker{'s' if k > 1 else ''}")
        ws = workers(stack, k)
        per: dict[str, float] = {}
        cpu0: dict[str, float] = {}

        def progress() -> float:
            total = 0.0
            for child, port in ws:
                try:
                    per[child.name] = _scored(scrape(port))
                except OSError:
                    pass
                total += per.get(child.name, 0.0)
            if total and not cpu0:  # follow() starts its clock at the same poll
                cpu0.update({c.name: cpu_seconds(c.proc.pid) for c, _ in ws})  # type: ignore[union-attr]
            return total

        res = follow(n, ws[0][0].proc.pid, progress, timeout_s,  # type: ignore[union-attr]
                     lambda: all(c.alive for c, _ in ws), SCORING_POLL_S)
        cpu = {c.name: cpu_seconds(c.proc.pid) - cpu0.get(c.name, 0.0) for c, _ in ws}  # type: ignore[union-attr]
        hwm = {c.name: peak_mb(c.proc.pid) for c, _ in ws}  # type: ignore[union-attr]
        crashed = stack.crashed()
    return {"rate": res.rate, "timed": res.timed, "elapsed": res.elapsed, "complete": res.complete, "seen": res.seen,
            "per": per, "cpu": cpu, "hwm": hwm, "crashed": crashed}, base


def run(ctx: Context) -> list[Row]:
    n = N_QUICK if ctx.budget.name == "quick" else N_FULL
    timeout_s = max(60.0, n / 300)
    ctx.setup += [
        f"**scaling**: the scoring stage's workload ({n:,} enriched reports over 514 kabupaten/kota × 9 categories, "
        "pre-produced to pantau.reports.v1, 4 partitions) read by one scoring worker, then on a fresh broker by two "
        "started together (each with its own `--web-port`, which also keys its Faust datadir), timed like the scoring stage from the sum of their counters. Baseline: a raw aiokafka consumer "
        "(getmany, JSON decode and a dict count per (region, category) per message, commit per batch) of the same "
        "messages: the ceiling on this machine. "
        "The machine has 2 cores for broker, Redis and every worker.",
    ]
    one, base = _run_workers(ctx, 1, n, timeout_s, with_baseline=True)
    ctx.log(f"scaling: 1 worker {one['rate']:,.0f} reports/s; raw consumer {base['rate']:,.0f}")  # type: ignore[index]
    two, _ = _run_workers(ctx, 2, n, timeout_s, with_baseline=False)
    ctx.log(f"scaling: 2 workers {two['rate']:,.0f} reports/s")
    assert base is not None
    rows = []
    for k, r in ((1, one), (2, two)):
        notes = [
            f"timed over {r['timed']:,.0f} of {n:,} in {r['elapsed']:.1f} s; reports per worker: "
            + ", ".join(f"{w} {v:,.0f}" for w, v in r["per"].items())
            + "; cores busy: " + ", ".join(f"{w} {s / r['elapsed'] if r['elapsed'] else 0:.2f}" for w, s in r["cpu"].items())
            + "; peak RSS: " + ", ".join(f"{w} {v:.0f} MB" for w, v in r["hwm"].items()),
        ]
        if k == 1:
            notes.append(f"raw consumer: {base['timed']:,} in {base['elapsed_s']:.2f} s, "
                         f"{base['cpu_s'] / base['elapsed_s'] if base['elapsed_s'] else 0:.2f} cores, "
                         f"peak {base['peak_mb']:.0f} MB")
        else:
            notes.append(f"two workers / one worker = {two['rate'] / one['rate'] if one['rate'] else 0:.2f}")
        if not r["complete"]:
            notes.append(f"TIMED OUT or a worker exited after {timeout_s:g} s with {r['seen']:,.0f} of {n:,}")
        if r["crashed"]:
            notes.append(f"exited during the run: {', '.join(r['crashed'])}")
        cpu_s = sum(r["cpu"].values())
        rows.append(Row(f"scoring, {k} worker{'s' if k > 1 else ''} vs raw aiokafka consumer", "reports/s", r["rate"],
                        base["rate"], None, cpu_us=1e6 * cpu_s / r["timed"] if r["timed"] else None,
                        base_cpu_us=1e6 * base["cpu_s"] / base["timed"] if base["timed"] else None, notes=notes,
                        ratio_target=TARGET_VS_RAW if k == 1 else None))
    return rows
