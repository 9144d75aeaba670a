"""The `durable` stage: the whole pipeline on the durable embedded stack (`pantau up --config`'s
default: Tansu `s3://` on cli/s3store.py, Redis fsyncing every write) beside the same run on
`memory://` (`--ephemeral`), in one invocation: POST /v1/reports → the on-call's webhook
`triggered` page, p50/p99, at a steady rate where every report pages (bench.pipeline's
worst case, at a rate one office's stack is meant for).

The baseline column here is the ephemeral stack, not an I/O skeleton: the ratio is what
durability costs."""

from __future__ import annotations

from functools import partial

from bench import workload
from bench.context import Context
from bench.durable_stack import batches, by_topic, full_stack
from bench.openloop import OpenResult, OpenSpec, pct, run_open
from bench.pipeline import HEADERS, Segments, _score_times, _v1_times, segments
from bench.report import Row

RATE = 50.0  # reports/s: the power-cut test's stream; a busy day for one office is far below
SETTLE_S = 60.0


def _spec(port: int, requests) -> OpenSpec:
    return OpenSpec("127.0.0.1", port, "/v1/reports", HEADERS, requests, RATE)


def measure(durable: bool, n: int, warm: int, keep: bool) -> tuple[Segments, OpenResult, list[str], int]:
    """(latency per leg, the run's sends, crashed services, record batches the broker holds)."""
    with full_stack(durable, keep) as (stack, receiver):
        port = stack.config.ingest.port
        run_open(_spec(port, partial(workload.paging_requests, "dur-warm", 0, warm)))
        receiver.wait_count(int(0.95 * warm), 120)
        receiver.wait_quiet(2.0, SETTLE_S)
        before = receiver.count()
        requests = workload.paging_requests("dur", warm, n)
        res = run_open(_spec(port, partial(workload.paging_requests, "dur", warm, n)))
        receiver.wait_count(before + n, SETTLE_S)
        # Province pages count too, so the count can reach n with some measured pages still on
        # their way: wait until none has come for a while before reading what was paged.
        receiver.wait_quiet(2.0, SETTLE_S)
        crashed = stack.crashed()
        pages = receiver.stop()
        bootstrap = stack.config.kafka.bootstrap_servers
        seg = segments(res, requests, pages, _v1_times(bootstrap), _score_times(bootstrap))
        stored = sum(by_topic(batches(stack.workdir)).values()) if durable else 0
    return seg, res, crashed, stored


def run(ctx: Context) -> list[Row]:
    n = int(RATE * ctx.budget.duration_s * 3)
    warm = int(RATE * max(2.0, ctx.budget.warmup_s))
    ctx.setup.append(
        f"**durable**: the pipeline stage's stack (four services, a webhook receiver), once durable (Tansu s3:// on "
        f"cli/s3store.py, Redis appendfsync always) and once on memory://, each: a {warm}-report warm-up, then "
        f"{n:,} reports at {RATE:g}/s (open loop), each a severity-5 report for its own cell, so each opens an "
        "incident and pages; latency = scheduled send → the receiver gets that cell's `triggered` page")
    got = {}
    for durable in (True, False):
        ctx.log(f"durable: pipeline on {'the durable stack' if durable else 'memory://'}, {n:,} reports at {RATE:g}/s")
        got[durable] = seg, res, crashed, stored = measure(durable, n, warm, ctx.keep)
        ctx.log(f"durable: {'durable' if durable else 'memory://'} p50 {pct(seg.total, 0.5) or 0:.0f} ms, "
                f"p99 {pct(seg.total, 0.99) or 0:.0f} ms, {seg.paged:,} of {seg.sent:,} paged")
    (d, _, dcrash, stored), (m, _, mcrash, _) = got[True], got[False]
    notes = [f"{d.paged:,} of {d.sent:,} paged on the durable stack, {m.paged:,} of {m.sent:,} on memory://; "
             f"{stored:,} record batches in the durable broker at the end",
             "durable, where the time goes, p50 / p99: " + "; ".join(
                 f"{k} {pct(v, 0.5) or 0:.0f} / {pct(v, 0.99) or 0:.0f} ms" for k, v in d.legs.items() if v)]
    if dcrash or mcrash:
        notes.append(f"exited during the run: durable {dcrash or 'none'}, memory {mcrash or 'none'}")
    return [Row(f"pipeline on the durable stack vs memory://: POST → webhook `triggered` p99, {RATE:g} reports/s, "
                "each pages", "ms", pct(d.total, 0.99) or 0.0, pct(m.total, 0.99) or 0.0, None,
                pct(d.total, 0.5), pct(d.total, 0.99), pct(m.total, 0.5), pct(m.total, 0.99),
                notes=notes, lower_is_better=True)]
