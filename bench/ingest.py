"""The ingest stage: the HTTP gateway (one report per request, and batches of 500) and the
raw-topic validator, each measured beside its baseline in the same run.

- single: closed-loop POST /v1/reports of distinct valid reports; a 202 is sent only after
  the broker's acks=all acknowledgement, so its latency is "POST to broker ack".
- batch: the same with POST /v1/reports:batch, 500 distinct reports per request.
- validator: N raw reports produced to `pantau.reports.raw` while the validator is down; then
  it starts, and the rate counts from its first finished batch (group join excluded) until
  its metrics say all N are on `pantau.reports.v1`.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Iterator

import orjson

from bench import workload
from bench.context import Budget, Context
from bench.cpu import CpuMeter
from bench.load import Result, Spec, measure
from bench.profile import sampled
from bench.report import Row
from bench.stack import create_topic, embedded, metric, scrape, wait_http_ready
from cli.stack import Child, free_port, wait_port
from shared import topics

TARGET_SINGLE_RPS = 2_000
TARGET_BATCH_REPORTS = 20_000
TARGET_VALIDATOR_REPORTS = 20_000
# Issue 18's targets, as ratios to the baselines of the same run.
TARGET_SINGLE_CPU_RATIO = 2.5  # CPU per request at most this times bare FastAPI's
TARGET_VS_VALIDATING = 0.5  # batch and validator: at least this share of parse + validate alone
TARGET_VS_PIPE = 0.5  # validator: at least this share of the consume → produce pipe
BATCH_SIZE = 500
PIPE_TOPIC = "bench.pipe.out"
METRICS_POLL_S = 0.1

HEADERS = {"Authorization": f"Bearer {workload.API_KEY}", "Content-Type": "application/json"}


def run(ctx: Context) -> list[Row]:
    b = ctx.budget
    ctx.setup += [
        f"**ingest single**: a load generator in its own process (uvloop, a bare asyncio HTTP/1.1 "
        f"protocol, request bytes built before the clock starts) keeps {b.connections} keep-alive "
        f"connections busy for {b.duration_s:g} s or {b.single_max:,} requests; each request is a new valid "
        "report. Rate = 202s / time to the last answer; p50/p99 = POST to 202, and the gateway answers 202 "
        "only after the broker's acks=all ack. Baseline: the same client against uvicorn + FastAPI answering "
        "202 after reading the body (no validation, no Redis, no Kafka).",
        f"**ingest batch**: as single, with {b.batch_connections} connections posting POST /v1/reports:batch "
        f"of {BATCH_SIZE} new reports ({b.batch_max:,} batches at most); rate = reports answered `accepted` "
        "per second, latency per batch. Baseline: the same app parsing the batch and validating each report "
        "as the gateway does (shared.schemas.validate_obj), answering one result per report; no Redis, no Kafka.",
        f"**ingest validator**: {b.raw_n:,} raw reports are produced to `pantau.reports.raw` with the "
        "validator stopped; the validator then starts, and the rate counts from its first finished batch "
        f"(so group join and recovery are excluded) until its Prometheus counters (polled every "
        f"{METRICS_POLL_S:g} s) show all {b.raw_n:,} on `pantau.reports.v1`. Baseline: an aiokafka "
        "getmany → produce (acks=all) → commit loop over the same messages to another topic, with the "
        "validator's client settings, no validation and no Redis, timed the same way; and (second row) the "
        "validator's per-message work alone, `bench.baselines validate`: parse, validate and build the enriched "
        "value of the same reports in a loop, no Kafka, no Redis.",
        "Before each HTTP measurement, a warm-up run of "
        f"{b.warmup_s:g} s is sent and not counted. Gateway, validator and baselines are one process each.",
    ]
    rows: list[Row] = []
    with embedded(("ingest-gateway",), keep=ctx.keep) as stack:
        wait_http_ready(stack.config.ingest.port)
        with http_baseline(stack.workdir) as (base_port, base_pid):
            t = Targets(stack.config.ingest.port, _pids(stack, "ingest-gateway"), base_port, base_pid)
            rows.append(_http(ctx, t, SINGLE))
            rows.append(_http(ctx, t, BATCH))
    with embedded((), keep=ctx.keep) as stack:
        rows += validator(ctx, stack)
    return rows


def _pids(stack, service: str) -> dict[str, int]:
    """The processes whose CPU is measured: the service under test, the broker and Redis."""
    names = {service: service.removeprefix("ingest-"), "broker": "broker", "redis": "redis"}
    return {label: stack.children[name].proc.pid for name, label in names.items()}


# --- HTTP --------------------------------------------------------------------------------------
@contextmanager
def http_baseline(workdir) -> Iterator[tuple[int, int]]:
    port = free_port()
    child = Child("http-baseline", [sys.executable, "-m", "bench.baselines", "http", str(port)],
                  workdir / "logs" / "http-baseline.log").start()
    try:
        wait_port("127.0.0.1", port, 30, child.proc, "http baseline")
        yield port, child.proc.pid  # type: ignore[union-attr]
    finally:
        child.stop()


@dataclass(frozen=True)
class Targets:
    """Where the HTTP measurements send: the gateway (and the processes to meter) and the baseline."""

    port: int
    pids: dict[str, int]  # gateway, broker, redis
    base_port: int
    base_pid: int


@dataclass(frozen=True)
class HttpCase:
    """One HTTP measurement: what to post and how to count what was accepted."""

    name: str
    stage: str
    path: str
    reports_per_request: int
    ok_status: int
    token: bytes  # occurs once per accepted report in the answer
    unit: str
    target: float

    def bodies(self, tag: str, n: int):
        if self.reports_per_request == 1:
            return partial(workload.single_bodies, tag, n)
        return partial(workload.batch_bodies, tag, n, self.reports_per_request)

    def requests(self, b: Budget) -> tuple[int, int, int]:
        """(connections, max requests, warm-up requests) within the budget."""
        if self.reports_per_request == 1:
            return b.connections, b.single_max, max(1, int(b.warmup_s * 2000))
        return b.batch_connections, b.batch_max, max(1, int(b.warmup_s * 40))


SINGLE = HttpCase("single", "ingest single (POST /v1/reports)", "/v1/reports", 1, 202, b'"accepted"', "req/s",
                  TARGET_SINGLE_RPS)
BATCH = HttpCase("batch", f"ingest batch (POST /v1/reports:batch, {BATCH_SIZE} each)", "/v1/reports:batch",
                 BATCH_SIZE, 200, b'"status":"accepted"', "reports/s", TARGET_BATCH_REPORTS)


def _spec(port: int, case: HttpCase, bodies, connections: int, duration_s: float, max_requests: int,
          cycle: bool = False) -> Spec:
    return Spec("127.0.0.1", port, case.path, HEADERS, bodies, connections, duration_s, max_requests, cycle,
                case.token)


def _gateway_stats(before: str, after: str, endpoint: str, code: str) -> tuple[float, float]:
    """Mean server-side request time and mean broker-ack time, in ms, between two scrapes."""
    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    n = delta("pantau_ingest_request_duration_seconds_count", endpoint=endpoint, code=code)
    s = delta("pantau_ingest_request_duration_seconds_sum", endpoint=endpoint, code=code)
    an = delta("pantau_ingest_broker_ack_seconds_count")
    asum = delta("pantau_ingest_broker_ack_seconds_sum")
    return (1000 * s / n if n else 0.0), (1000 * asum / an if an else 0.0)


def _check(res: Result, case: HttpCase) -> list[str]:
    notes = []
    bad = {s: n for s, n in res.statuses.items() if s != case.ok_status}
    if bad:
        notes.append(f"answers other than {case.ok_status}: {bad}")
    if res.errors:
        notes.append(f"{res.errors} connection errors or unanswered requests")
    missing = res.ok(case.ok_status) * case.reports_per_request - res.tokens
    if missing:
        notes.append(f"{missing:,} reports in {case.ok_status} answers not `accepted`")
    return notes


def _per(cpu_s: float, n: float) -> float | None:
    """CPU microseconds per report."""
    return 1e6 * cpu_s / n if n else None


def _http(ctx: Context, t: Targets, case: HttpCase) -> Row:
    b = ctx.budget
    conns, max_n, warm_n = case.requests(b)
    per = case.reports_per_request
    ctx.log(f"{case.name}: baseline")
    measure(_spec(t.base_port, case, case.bodies("w", 4 if per > 1 else 1000), conns, b.warmup_s,
                  b.baseline_max, cycle=True))
    with CpuMeter({"baseline": t.base_pid}) as base_cpu:
        base = measure(_spec(t.base_port, case, case.bodies("b", 32 if per > 1 else 10_000), conns, b.duration_s,
                             b.baseline_max, cycle=True))
    base_rate = base.rate * per
    ctx.log(f"{case.name}: baseline {base_rate:,.0f} {case.unit}; pantau")

    measure(_spec(t.port, case, case.bodies(f"{case.name}-warm", warm_n), conns, b.warmup_s, warm_n))
    before = scrape(t.port)
    with sampled(t.pids["gateway"], ctx.profile_dir, f"gateway-{case.name}"), CpuMeter(t.pids) as cpu:
        res = measure(_spec(t.port, case, case.bodies(case.name, max_n), conns, b.duration_s, max_n))
    server_ms, ack_ms = _gateway_stats(before, scrape(t.port), case.path, str(case.ok_status))
    accepted = res.tokens
    rate = (accepted if per > 1 else res.ok(case.ok_status)) / res.elapsed_s if res.elapsed_s else 0.0
    ctx.log(f"{case.name}: pantau {rate:,.0f} {case.unit} (p50 {res.p50_ms:.1f} ms, p99 {res.p99_ms:.1f} ms)")

    what = "request" if per == 1 else f"batch of {per}"
    notes = [
        f"{accepted:,} reports accepted in {res.completed:,} requests in {res.elapsed_s:.1f} s; baseline answered "
        f"{base.completed:,} requests in {base.elapsed_s:.1f} s; latency is per {what}",
        f"cores busy in the timed window: {cpu.cores(res.elapsed_s, {'load generator': res.cpu_s})} (baseline run: "
        f"{base_cpu.cores(base.elapsed_s, {'load generator': base.cpu_s})})",
        f"gateway-side mean request time (its timing middleware) {server_ms:.1f} ms, of which awaiting the "
        f"broker ack{'s' if per > 1 else ''} {ack_ms:.1f} ms",
    ]
    notes += _check(res, case)
    single = per == 1
    return Row(case.stage, case.unit, rate, base_rate, case.target, res.p50_ms, res.p99_ms, base.p50_ms,
               base.p99_ms, _per(cpu.seconds["gateway"], accepted),
               _per(base_cpu.seconds["baseline"], base.completed * per), notes,
               ratio_target=None if single else TARGET_VS_VALIDATING,
               cpu_ratio_target=TARGET_SINGLE_CPU_RATIO if single else None)


# --- raw topic -----------------------------------------------------------------------------------
async def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await p.start()
    try:
        for i in range(0, len(messages), 10_000):
            futs = [await p.send(topic, v, key=k) for k, v in messages[i:i + 10_000]]
            await asyncio.gather(*futs)
    finally:
        await p.stop()


async def _count_topic(bootstrap: str, topic: str, timeout_s: float = 60) -> int:
    """Messages on `topic`, read to the high watermark that Fetch reports (Tansu 0.6's
    ListOffsets answers the last batch's base offset + 1, so `end_offsets` undercounts)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                         max_partition_fetch_bytes=4 << 20)
    await c.start()
    try:
        await c.topics()  # fetches the cluster's metadata
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        n, deadline = 0, time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = await c.getmany(timeout_ms=500, max_records=10_000)
            n += sum(len(ms) for ms in got.values())
            positions = [await c.position(tp) for tp in tps]
            if all(c.highwater(tp) is not None and pos >= c.highwater(tp) for tp, pos in zip(tps, positions)):
                break
        return n
    finally:
        await c.stop()


def _processed(text: str) -> float:
    """Raw messages the validator has finished: accepted, duplicate or dead-lettered."""
    return (metric(text, "pantau_reports_accepted_total", path="raw")
            + metric(text, "pantau_reports_duplicate_total", path="raw")
            + metric(text, "pantau_dlq_messages_total"))


def validator(ctx: Context, stack) -> list[Row]:
    b = ctx.budget
    n = b.raw_n
    bootstrap = stack.config.kafka.bootstrap_servers
    ctx.log(f"validator: producing {n:,} raw reports")
    messages = workload.raw_messages("raw", n)
    t0 = time.perf_counter()
    asyncio.run(_produce(bootstrap, topics.REPORTS_RAW, messages))
    produce_rate = n / (time.perf_counter() - t0)
    del messages

    ctx.log("validator: baseline pipe")
    create_topic(bootstrap, PIPE_TOPIC)
    out = subprocess.run([sys.executable, "-m", "bench.baselines", "pipe", "--bootstrap", bootstrap,
                          "--source", topics.REPORTS_RAW, "--dest", PIPE_TOPIC, "--group", "bench-pipe",
                          "--n", str(n), "--timeout", str(b.raw_timeout_s)],
                         capture_output=True, text=True, timeout=b.raw_timeout_s + 60)
    if out.returncode != 0:
        raise RuntimeError(f"baseline pipe failed:\n{out.stderr[-3000:]}")
    base = orjson.loads(out.stdout.strip().splitlines()[-1])
    ctx.log(f"validator: baseline {base['rate']:,.0f} reports/s; validation alone")
    out = subprocess.run([sys.executable, "-m", "bench.baselines", "validate", "--n", str(n)],
                         capture_output=True, text=True, timeout=b.raw_timeout_s + 60)
    if out.returncode != 0:
        raise RuntimeError(f"baseline validate failed:\n{out.stderr[-3000:]}")
    alone = orjson.loads(out.stdout.strip().splitlines()[-1])
    ctx.log(f"validator: validation alone {alone['rate']:,.0f} reports/s; pantau")

    stack.start_service("ingest-validator", wait=True)
    pids = _pids(stack, "ingest-validator")
    cpu = CpuMeter(pids)
    mport = stack.config.ingest.metrics_port
    first_t = first_n = last_t = 0.0
    seen = 0.0
    deadline = time.monotonic() + b.raw_timeout_s
    with sampled(pids["validator"], ctx.profile_dir, "validator"):
        while time.monotonic() < deadline:
            t = time.perf_counter()
            seen = _processed(scrape(mport))
            if seen and not first_t:
                first_t, first_n = t, seen
                cpu.start()
            if seen >= n:
                break
            time.sleep(METRICS_POLL_S)
        last_t = time.perf_counter()
        if first_t:
            cpu.stop()
    final = scrape(mport)
    elapsed = last_t - first_t if first_t else 0.0
    timed = seen - first_n
    rate = timed / elapsed if elapsed > 0 else 0.0
    on_v1 = asyncio.run(_count_topic(bootstrap, topics.REPORTS_V1))
    ctx.log(f"validator: pantau {rate:,.0f} reports/s")
    notes = [
        f"{n:,} raw reports (pre-produced at {produce_rate:,.0f}/s); validator timed over {timed:,.0f} of them in "
        f"{elapsed:.1f} s, baseline over {base['timed']:,} in {base['elapsed_s']:.1f} s; {on_v1:,} messages on "
        "pantau.reports.v1 afterwards",
        f"cores busy in the timed window: {cpu.cores(elapsed)} "
        f"(pipe: {base['cpu_s'] / base['elapsed_s'] if base['elapsed_s'] else 0:.2f})",
    ]
    if seen < n:
        notes.append(f"TIMED OUT after {b.raw_timeout_s:g} s with {seen:,.0f} of {n:,} processed")
    dup, dlq = (metric(final, "pantau_reports_duplicate_total", path="raw"), metric(final, "pantau_dlq_messages_total"))
    if dup or dlq:
        notes.append(f"unexpected: {dup:,.0f} duplicates and {dlq:,.0f} dead-lettered")
    if not base["complete"]:
        notes.append(f"baseline pipe did not finish within {b.raw_timeout_s:g} s")
    mine = _per(cpu.seconds.get("validator", 0.0), timed)
    return [Row("ingest validator (raw → reports.v1)", "reports/s", rate, base["rate"],
                TARGET_VALIDATOR_REPORTS, cpu_us=mine, base_cpu_us=_per(base["cpu_s"], base["timed"]), notes=notes,
                ratio_target=TARGET_VS_PIPE),
            Row("ingest validator vs its validation alone (no Kafka, no Redis)", "reports/s", rate, alone["rate"],
                None, cpu_us=mine, base_cpu_us=_per(alone["cpu_s"], alone["timed"]),
                notes=[f"validation alone: {alone['timed']:,} reports in {alone['elapsed_s']:.2f} s "
                       f"({alone['cpu_s'] / alone['elapsed_s'] if alone['elapsed_s'] else 0:.2f} cores)"],
                ratio_target=TARGET_VS_VALIDATING)]
