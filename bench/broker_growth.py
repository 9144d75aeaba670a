"""How fast the durable broker fills: record batches written per topic, idle and under a steady
feed of reports (`python -m bench.broker_growth --idle-min 5 --feed-min 5 --rate 1`).

Every record batch is one object in the store, never deleted, and Tansu lists a partition's
objects on every fetch of it, so batches an hour decide how long the durable mode runs before
fetches and restarts slow down (README, One machine: durable and ephemeral modes)."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import httpx

from bench import workload
from bench.durable_stack import batches, by_topic, full_stack

HEADERS = {"Authorization": f"Bearer {workload.API_KEY}", "Content-Type": "application/json"}
WARMUP_S = 60.0  # group joins, table recovery and the first ticks are not the steady state


def per_hour(before: Counter, after: Counter, seconds: float) -> dict[str, float]:
    return {t: (after[t] - before[t]) * 3600 / seconds for t in sorted(set(after) | set(before))
            if after[t] != before[t]}


def show(title: str, rates: dict[str, float]) -> None:
    print(f"{title}: {sum(rates.values()):,.0f} batches/hour")
    for topic, r in sorted(rates.items(), key=lambda kv: -kv[1]):
        print(f"  {topic:48s} {r:10,.0f}")


def feed(port: int, rate: float, seconds: float, tag: str) -> int:
    """POST one report at a time at `rate` a second (mostly quiet cells: few pages)."""
    bodies = workload.single_bodies(tag, int(rate * seconds) + 1)
    sent, t0 = 0, time.monotonic()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        for body in bodies:
            due = t0 + sent / rate
            while (now := time.monotonic()) < due:
                time.sleep(due - now)
            if now - t0 > seconds:
                break
            r = c.post("/v1/reports", content=body, headers=HEADERS)
            if r.status_code != 202:
                raise RuntimeError(f"POST /v1/reports: {r.status_code} {r.text}")
            sent += 1
    return sent


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.broker_growth", description=__doc__.split("\n")[0])
    ap.add_argument("--idle-min", type=float, default=5.0)
    ap.add_argument("--feed-min", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=1.0, help="reports/s during the feed")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    with full_stack(durable=True, keep=args.keep) as (stack, _):
        time.sleep(WARMUP_S)
        before, t0 = by_topic(batches(stack.workdir)), time.monotonic()
        time.sleep(args.idle_min * 60)
        idle_end, t1 = by_topic(batches(stack.workdir)), time.monotonic()
        show(f"idle {args.idle_min:g} min", per_hour(before, idle_end, t1 - t0))
        if args.feed_min > 0:
            sent = feed(stack.config.ingest.port, args.rate, args.feed_min * 60, f"growth-{int(time.time())}")
            time.sleep(5)  # the last reports through scoring
            fed, t2 = by_topic(batches(stack.workdir)), time.monotonic()
            show(f"feed {sent} reports at {args.rate:g}/s over {args.feed_min:g} min",
                 per_hour(idle_end, fed, t2 - t1))
        print(f"crashed: {stack.crashed() or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
