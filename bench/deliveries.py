"""The deliveries stage: how many webhook deliveries per second notify sustains, beside notify's
own HTTP client (HttpPool, aiohttp) posting to the same receiver with as many requests in
flight, twice: with a receiver answering at once (what notify itself costs per page: the
baseline is then bound only by the client and the receiver) and with one answering after
200 ms (a slow peer: both sides are then bound by concurrency / delay).

- pantau: notify alone (broker, Redis, `python -m services.notify`) with the pipeline's config
  (one policy paging one contact by webhook, notify.delivery.concurrency 64, which is also the
  size of its HTTP pool). N `awas` score updates, each for its own (kabupaten/kota, category),
  are produced to scores.v1 at once; each opens an incident whose step pages the contact. The
  rate counts at the receiver from its first request to the N-th (notify's group join is left
  out), so it covers the whole of notify: consume, incident in Redis, scheduler firing, delivery
  submit, claim, POST, and recording the outcome.
- baseline: `bench.baselines post`, notify's HttpPool with the same pool size and the same number in
  flight, POSTing webhook-sized bodies to the same receiver: the most any sender can do at
  this concurrency (at most concurrency / delay = 320/s).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import orjson

from bench import workload
from bench.context import Context
from bench.cpu import CpuMeter
from bench.pipeline import DELIVERY_CONCURRENCY, PAGE_PATH, pids, pipeline_stack
from bench.profile import sampled
from bench.report import Row
from shared import topics

DELAYS_MS = (0.0, 200.0)  # a receiver answering at once, and a slow one
N_FULL, N_QUICK = 2_000, 300


def score_updates(n: int) -> list[tuple[bytes, bytes]]:
    """(key, value) for scores.v1: `awas` for cells 0..n-1, in the bucket of the region's local today."""
    from shared.regions import registry

    reg = registry()
    now = time.time()
    out = []
    for i, (region, category) in enumerate(workload.cells()[:n]):
        local = datetime.fromtimestamp(now, reg.timezone_of(region))
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        out.append((region.encode(), orjson.dumps({
            "region_code": region, "category": category, "bucket_start": start.isoformat(),
            "bucket_end": (start + timedelta(days=1)).isoformat(), "observed": 1, "weighted": 1.0,
            "expected": 0.2, "upper": 0.9, "method": "ears-c2", "alarm": True, "level": "awas",
            "reasons": ["laporan tingkat keparahan 5"], "report_ids": [f"bench-dlv-{i:06d}"],
            "computed_at": datetime.now(timezone.utc).isoformat(),
        })))
    return out


def _rate(values: list[float]) -> str:
    # notify opens a consumer batch's incidents in one write, with one time: a span of 0.
    if len(values) > 1 and max(values) == min(values):
        return "all at once"
    return f"{_spread(values):,.0f}/s"


def _spread(values: list[float]) -> float:
    """Events per second over the span of `values` (timestamps)."""
    if len(values) < 2:
        return 0.0
    span = max(values) - min(values)
    return (len(values) - 1) / span if span > 0 else 0.0


def run(ctx: Context) -> list[Row]:
    n = N_QUICK if ctx.budget.name == "quick" else N_FULL
    ctx.setup += [
        f"**deliveries**: notify alone, fed {n:,} `awas` score updates on scores.v1 at once, each for its own cell "
        "(one incident, one webhook page each); the webhook receiver answers at once (first row: what notify costs "
        f"per page) or after {DELAYS_MS[-1]:g} ms (second row: a slow peer). Rate = pages "
        "received per second from the first to the last (group join excluded); it covers consume, incident, "
        f"scheduler, delivery claim, POST and outcome. notify.delivery.concurrency {DELIVERY_CONCURRENCY} (the "
        "default, 16, caps any receiver this slow at 80/s). Baseline: notify's HTTP client (HttpPool) with the "
        "same pool size and the same number in flight posting to the same receiver (with the 200 ms receiver "
        f"≤ {DELIVERY_CONCURRENCY / DELAYS_MS[-1] * 1000:g}/s).",
    ]
    return [_measure(ctx, n, delay_ms) for delay_ms in DELAYS_MS]


def _measure(ctx: Context, n: int, delay_ms: float) -> Row:
    from bench.ingest import _produce

    timeout_s = max(60.0, n / 10)
    answering = "at once" if not delay_ms else f"after {delay_ms:g} ms"
    with pipeline_stack(ctx.keep, delay_ms=delay_ms, services=("notify",),
                        prefix="pantau-bench-deliveries-") as (stack, receiver):
        ctx.log(f"deliveries ({answering}): baseline, HttpPool with {DELIVERY_CONCURRENCY} in flight")
        out = subprocess.run([sys.executable, "-m", "bench.baselines", "post", "--url", receiver.url + "/base",
                              "--n", str(n), "--concurrency", str(DELIVERY_CONCURRENCY)],
                             capture_output=True, text=True, timeout=timeout_s + 60)
        if out.returncode != 0:
            raise RuntimeError(f"baseline post failed:\n{out.stderr[-3000:]}")
        base = orjson.loads(out.stdout.strip().splitlines()[-1])
        ctx.log(f"deliveries ({answering}): baseline {base['rate']:,.0f}/s; notify")
        before = receiver.count()
        asyncio.run(_produce(stack.config.kafka.bootstrap_servers, topics.SCORES_V1, score_updates(n)))
        cpu = CpuMeter(pids(stack))
        deadline = time.monotonic() + timeout_s
        with sampled(pids(stack)["notify"], ctx.profile_dir, f"notify-deliveries-{delay_ms:g}ms"):
            seen, first_t, first_n = _wait_pages(stack, receiver, cpu, before, n, deadline)
        elapsed = time.perf_counter() - first_t if first_t else 0.0
        if first_t:
            cpu.stop()
        pages = [p for p in receiver.stop() if p.get("path") == PAGE_PATH]
    timed = seen - first_n
    rate = timed / elapsed if elapsed > 0 else 0.0
    ctx.log(f"deliveries ({answering}): notify {rate:,.0f}/s")
    opened = [t for p in pages if (t := _ts(p.get("opened_at"))) is not None]
    fired = [t for p in pages if (t := _ts(p.get("updated_at"))) is not None]
    notes = [
        f"notify: {seen:,} of {n:,} pages, timed over {timed:,.0f} in {elapsed:.1f} s; baseline {base['ok']:,} "
        f"answered, timed over {base['elapsed_s']:.1f} s",
        f"inside notify: incidents opened at {_rate(opened)}, steps fired at {_rate(fired)}, pages "
        f"received at {_rate([p['t'] for p in pages])} (the slowest of these is the bound)",
        f"cores busy in the timed window: {cpu.cores(elapsed)} (baseline client "
        f"{base['cpu_s'] / base['wall_s'] if base['wall_s'] else 0:.2f})",
    ]
    if seen < n:
        notes.append(f"TIMED OUT or notify exited after {timeout_s:g} s with {seen:,} of {n:,} pages")
    return Row(f"notify deliveries/s, receiver answering {answering} ({DELIVERY_CONCURRENCY} in flight)",
               "deliveries/s", rate, base["rate"], None,
               cpu_us=1e6 * cpu.seconds.get("notify", 0.0) / timed if timed else None,
               base_cpu_us=1e6 * base["cpu_s"] / base["ok"] if base["ok"] else None, notes=notes)


def _wait_pages(stack, receiver, cpu: CpuMeter, before: int, n: int, deadline: float) -> tuple[int, float, float]:
    """Wait for `n` pages; the CPU meter starts at the first (notify's group join left out).
    Returns (pages seen, perf_counter time of the first, pages seen by then)."""
    first_t = first_n = 0.0
    seen = 0
    while time.monotonic() < deadline:
        t = time.perf_counter()
        seen = receiver.count() - before
        if seen and not first_t:
            first_t, first_n = t, seen
            cpu.start()
        if seen >= n or not stack.children["notify"].alive:
            break
        time.sleep(0.1)
    return seen, first_t, first_n


def _ts(rfc: str | None) -> float | None:
    if not rfc:
        return None
    return datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp()
