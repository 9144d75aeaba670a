"""The whole-pipeline stage: how long from `POST /v1/reports` until the on-call's webhook gets
the `triggered` page, at a steady 200 reports/s, where that time goes, and each service's
peak memory over the run.

    POST /v1/reports ─► gateway ─► reports.v1 ─► scoring ─► scores.v1 ─► notify ─► webhook
        (t sent)         (202)    (CreateTime)           (CreateTime)  opened_at,  (arrival)
                                                                        updated_at

- Workload: an open-loop schedule (bench.openloop) of 200 requests/s, each a severity-5 report
  for a (kabupaten/kota, category) cell nobody has reported on in this run, so each one is
  raised to `awas` at once, opens its own incident and pages one contact through a signed
  webhook. That is the worst case for notify (every report pages), not a typical day, when
  most reports land on incidents already open; 514 × 9 cells last 23 s at 200/s.
- Per stage, from timestamps the pipeline itself leaves: the 202 (client), each report's
  CreateTime on reports.v1 (the gateway's send), the `awas` update's CreateTime on scores.v1
  (scoring's send), the incident's opened_at (notify's consumer) and updated_at (its
  scheduler firing the step), and the receiver's arrival time. One machine, one clock.
- Baseline, the same schedule and receiver: the pipeline's I/O skeleton (`bench.baselines
  chain`: HTTP → Kafka → consumer → Kafka → consumer → webhook, with the services' client
  settings and no work): the latency this broker, HTTP stack and machine impose anyway.

The HTTP path does not go through the raw-topic validator (the gateway validates in-process
and writes reports.v1); the validator runs idle here so its memory is in the table too.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import orjson

from bench import receiver as rcv
from bench import workload
from bench.context import Context
from bench.cpu import CpuMeter
from bench.openloop import OpenResult, OpenSpec, pct, run_open
from bench.profile import sampled_all
from bench.report import Row
from bench.stack import PARTITIONS, create_topic, peak_mb, read_topic, wait_http_ready, write_config
from cli.stack import Child, EmbeddedStack, free_port, wait_port
from shared import topics

RATE = 200.0  # reports/s
# The steady-day row: as many reports a second, one in STEADY_PAGE_EVERY opening an incident,
# for STEADY_FACTOR times the measurement's duration (enough pages for a p99).
STEADY_PAGE_EVERY = 10
STEADY_FACTOR = 3
TARGET_P99_MS = 250.0
# Issue 18: p99 at most these times the chain's in the same run, and CPU per paged report at
# most TARGET_CPU_RATIO times the chain's, whatever the machine.
TARGET_RATIO_ALL_PAGE = 3.0
TARGET_RATIO_STEADY = 1.5
TARGET_CPU_RATIO = 1.5
TARGET_SCORING_MB = 300.0  # the scoring stage's target; no other service has one yet
HOOK_SECRET = "bench-webhook-secret-0123456789-Kd7w"
DELIVERY_CONCURRENCY = 64  # notify.delivery.concurrency (default 16); 64 = its HTTP pool size
PAGE_PATH = "/page"
CHAIN_PATH = "/chain"
SERVICES = ("ingest-gateway", "ingest-validator", "scoring", "notify")
HEADERS = {"Authorization": f"Bearer {workload.API_KEY}", "Content-Type": "application/json"}


# --- the stack: every service, one webhook contact -----------------------------------------------
def pipeline_config(path: Path, receiver_url: str, concurrency: int = DELIVERY_CONCURRENCY,
                    partitions: int = PARTITIONS) -> Path:
    """The bench config (free ports, one source) with a source allowed everywhere, scoring's web
    port, and one policy paging one contact through a webhook at `receiver_url` + /page.
    The step's wait is long, so nothing escalates during a run: one page per incident; and
    inhibition is off, so every incident pages."""
    from shared.notify_config import NotifySettings

    write_config(path, workload.all_provinces(), partitions)
    notify_port = free_port()
    # Every report here is meant to page: a province incident must not hold back the pages of
    # its kabupaten/kota incidents (inhibition, on by default), or most cells would never page.
    inhibit = "  inhibit: {province_over_kabupaten: false}\n" if "inhibit" in NotifySettings.model_fields else ""
    path.write_text(path.read_text() + f"""scoring:
  web_port: {free_port()}
contacts:
  - id: bench-oncall
    name: Piket bench
    webhook: "{receiver_url}{PAGE_PATH}"
channels:
  - id: hook
    type: webhook
    url: "{receiver_url}/default"
    secret: "{HOOK_SECRET}"
    timeout_s: 10
policies:
  - id: everywhere
    steps:
      - {{notify: ["contact:bench-oncall"], wait_minutes: 600}}
notify:
  port: {notify_port}
  metrics_port: {free_port()}
  public_url: "http://127.0.0.1:{notify_port}"
  link_secret: "bench-link-secret-0123456789abcdef"
{inhibit}  delivery:
    concurrency: {concurrency}
""")
    return path


class Receiver:
    """The webhook receiver child (bench.receiver): its URL, live count, and what it got."""

    def __init__(self, workdir: Path, delay_ms: float = 0.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.progress = workdir / "receiver.progress"
        self.out = workdir / "receiver.jsonl"
        self.child = Child("receiver", [sys.executable, "-m", "bench.receiver", "--port", str(self.port),
                                        "--delay-ms", str(delay_ms), "--progress", str(self.progress),
                                        "--out", str(self.out)], workdir / "logs" / "receiver.log")

    def start(self) -> "Receiver":
        self.child.start()
        wait_port("127.0.0.1", self.port, 30, self.child.proc, "receiver")
        return self

    @property
    def pid(self) -> int:
        return self.child.proc.pid  # type: ignore[union-attr]

    def count(self) -> int:
        return rcv.count(self.progress)

    def wait_count(self, n: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while (seen := self.count()) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return seen

    def wait_quiet(self, quiet_s: float, timeout_s: float) -> int:
        """Until no page has come for `quiet_s` (notify has caught up), or `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        seen, since = self.count(), time.monotonic()
        while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
            time.sleep(0.1)
            if (now := self.count()) != seen:
                seen, since = now, time.monotonic()
        return seen

    def stop(self) -> list[dict]:
        """Stop it and return what it received (one dict per request)."""
        self.child.stop(timeout_s=30)
        return rcv.read(self.out)


@contextmanager
def pipeline_stack(keep: bool, delay_ms: float = 0.0, services: tuple[str, ...] = SERVICES,
                   prefix: str = "pantau-bench-pipeline-", durable: bool = False, ready_s: float = 90,
                   scoring_ready_s: float = 60, partitions: int = PARTITIONS) -> Iterator[tuple[EmbeddedStack, Receiver]]:
    """Receiver, broker (and its store when `durable`), Redis and `services`, ready; all stopped
    on exit."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    receiver = Receiver(workdir, delay_ms).start()
    stack = EmbeddedStack(pipeline_config(workdir / "pantau.yaml", receiver.url, partitions=partitions), workdir,
                          services, durable=durable)
    failed = True
    try:
        stack.start_infra()
        for name in services:
            stack.start_service(name, wait=False)
        for name in services:
            stack.wait_ready(name, timeout_s=ready_s)
        if "ingest-gateway" in services:
            wait_http_ready(stack.config.ingest.port)
        if "scoring" in services:
            wait_http_ready(stack.config.scoring.web_port, timeout_s=scoring_ready_s)
        yield stack, receiver
        failed = False
    finally:
        stack.stop()
        receiver.child.stop()
        if failed or keep:
            print(f"bench: stack folder with logs kept at {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def pids(stack: EmbeddedStack) -> dict[str, int]:
    return {n: c.proc.pid for n, c in stack.children.items() if c.proc is not None}  # type: ignore[misc]


# --- measurements ----------------------------------------------------------------------------------
def _spec(port: int, path: str, requests: Callable[[], list[tuple[str, bytes]]]) -> OpenSpec:
    return OpenSpec("127.0.0.1", port, path, HEADERS, requests, RATE)


def _ts(rfc: str | None) -> float | None:
    if not rfc:
        return None
    return datetime.fromisoformat(rfc.replace("Z", "+00:00")).timestamp()


@dataclass
class Segments:
    """Milliseconds per report for each leg of the trip (only reports that were paged)."""

    total: list[float]
    legs: dict[str, list[float]]
    paged: int
    sent: int


def segments(res: OpenResult, requests: list[tuple[str, bytes]], pages: list[dict],
             v1: dict[str, float], scores: dict[tuple[str, str], float]) -> Segments:
    """Join, per report of `requests` (the others in `res` were background): its schedule and
    202, reports.v1 time, scores.v1 time, and the first `triggered` page for its cell (the
    cell is unique to the report)."""
    cell = {eid: (r["region_code"], r["category"]) for eid, r in ((e, orjson.loads(b)) for e, b in requests)}
    first: dict[tuple[str, str], dict] = {}
    for p in pages:
        if p.get("path") == PAGE_PATH and p.get("status") == "triggered":
            key = (p.get("region_code"), p.get("category"))
            if key not in first or p["t"] < first[key]["t"]:
                first[key] = p
    legs: dict[str, list[float]] = {k: [] for k in (
        "POST → 202 (gateway, acks=all)", "POST → on reports.v1 (gateway send)",
        "reports.v1 → scores.v1 (scoring)", "scores.v1 → incident opened (notify consumer)",
        "opened → step fired (notify scheduler)", "fired → webhook received (notify delivery)")}
    total = []
    for eid, at, done, _status in res.sent:
        page = first.get(cell.get(eid, ("", "")))
        if page is None:
            continue
        total.append(1000 * (page["t"] - at))
        names = list(legs)
        t_v1, t_sc = v1.get(eid), scores.get(cell[eid])
        opened, fired = _ts(page.get("opened_at")), _ts(page.get("updated_at"))
        for name, a, b in ((names[0], at, done or None), (names[1], at, t_v1), (names[2], t_v1, t_sc),
                           (names[3], t_sc, opened), (names[4], opened, fired), (names[5], fired, page["t"])):
            if a is not None and b is not None:
                legs[name].append(1000 * (b - a))
    return Segments(sorted(total), {k: sorted(v) for k, v in legs.items()}, len(total),
                    sum(1 for eid, _, _, _ in res.sent if eid in cell))


def chain_segments(res: OpenResult, pages: list[dict]) -> list[float]:
    first: dict[str, float] = {}
    for p in pages:
        if p.get("path") == CHAIN_PATH and p.get("report_ids"):
            eid = p["report_ids"][0]
            first[eid] = min(first.get(eid, p["t"]), p["t"])
    return sorted(1000 * (first[eid] - at) for eid, at, _, _ in res.sent if eid in first)


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{pct(values, 0.5):.0f} / {pct(values, 0.99):.0f} ms"


def _v1_times(bootstrap: str) -> dict[str, float]:
    out = {}
    for ts, _, value in read_topic(bootstrap, topics.REPORTS_V1):
        out[orjson.loads(value)["event_id"]] = ts / 1000
    return out


def _score_times(bootstrap: str) -> dict[tuple[str, str], float]:
    """First `awas` update of each (region, category) on scores.v1, by CreateTime."""
    out: dict[tuple[str, str], float] = {}
    for ts, _, value in read_topic(bootstrap, topics.SCORES_V1):
        u = orjson.loads(value)
        if u.get("level") == "awas":
            key = (u["region_code"], u["category"])
            out[key] = min(out.get(key, ts / 1000), ts / 1000)
    return out


def run(ctx: Context) -> list[Row]:
    b = ctx.budget
    n = int(RATE * b.duration_s)
    warm = int(RATE * max(1.0, b.warmup_s))
    settle_s = 60.0
    ctx.setup += [
        f"**pipeline**: all four services, broker and Redis, a webhook receiver (bench.receiver: bare asyncio "
        f"HTTP/1.1, answers 200 at once, notes arrival times) and an open-loop load generator sending "
        f"POST /v1/reports at a steady {RATE:g}/s ({n:,} reports after a {warm:,}-report warm-up that waits until "
        "scoring and notify page), each a severity-5 report for its own (kabupaten/kota, category) cell, so "
        "each is raised to `awas`, opens an incident and pages one contact through a signed webhook (one policy, "
        f"one step, notify.delivery.concurrency {DELIVERY_CONCURRENCY}, inhibition off so that no province incident "
        "holds a kabupaten/kota page back). Latency = scheduled send → the receiver "
        "gets that cell's `triggered` page; legs from the 202, the CreateTime of the report on reports.v1 and "
        "of the `awas` update on scores.v1, and the page's opened_at and updated_at. Worst case for notify "
        "(every report pages). The steady-day row (one report in ten pages) has its own run of each side. "
        "Baseline: the same schedule and receiver through `bench.baselines chain` "
        "(uvicorn+FastAPI → produce acks=all → aiokafka consumer → produce → consumer → POST through notify's HttpPool; the "
        f"services' client settings, no work): the latency of the I/O alone. Target p99 < {TARGET_P99_MS:g} ms. "
        "Peak memory: VmHWM of each process at the end of the run (start-up included).",
    ]
    rows: list[Row] = []
    with pipeline_stack(ctx.keep) as (stack, receiver):
        bootstrap = stack.config.kafka.bootstrap_servers
        gw_port = stack.config.ingest.port
        all_pids = {**pids(stack), "receiver": receiver.pid}

        ctx.log(f"pipeline: warm-up, {warm:,} reports (waits for scoring and notify to join)")
        warm_reqs = partial(workload.paging_requests, "pipe-warm", 0, warm)
        run_open(_spec(gw_port, "/v1/reports", warm_reqs))
        got = receiver.wait_count(int(0.95 * warm), 120)
        ctx.log(f"pipeline: warm-up paged {got:,} of {warm:,}; {n:,} reports at {RATE:g}/s")
        # The steady day first, on the warm-up's open cells, with fresh cells past the worst
        # case's: measured after the worst case, it met notify still paging that backlog.
        receiver.wait_quiet(2.0, settle_s)
        steady_n = int(RATE * b.duration_s * STEADY_FACTOR)
        steady_args = ("steady", warm, warm + n, steady_n, STEADY_PAGE_EVERY)
        steady_paging = [r for r in workload.steady_requests(*steady_args) if r[0].endswith("-page")]
        ctx.log(f"pipeline: steady day, {steady_n:,} reports at {RATE:g}/s, {len(steady_paging):,} of them paging")
        before = receiver.count()
        profiled = {s: all_pids[s] for s in ("ingest-gateway", "scoring", "notify")}
        with sampled_all(profiled, ctx.profile_dir, "steady"), CpuMeter(all_pids) as steady_cpu:
            t2 = time.perf_counter()
            steady = run_open(_spec(gw_port, "/v1/reports", partial(workload.steady_requests, *steady_args)))
            receiver.wait_count(before + len(steady_paging), settle_s)
            steady_window = time.perf_counter() - t2
        receiver.wait_quiet(2.0, settle_s)
        base_count = receiver.count()
        requests = workload.paging_requests("pipe", warm, n)
        with sampled_all(profiled, ctx.profile_dir, "pages"), CpuMeter(all_pids) as cpu:
            t0 = time.perf_counter()
            res = run_open(_spec(gw_port, "/v1/reports", partial(workload.paging_requests, "pipe", warm, n)))
            receiver.wait_count(base_count + n, settle_s)
            window = time.perf_counter() - t0
        ctx.log("pipeline: baseline chain")
        chain_port = free_port()
        chain = Child("chain", [sys.executable, "-m", "bench.baselines", "chain", "--port", str(chain_port),
                                "--bootstrap", bootstrap, "--topic-a", "bench.chain.a", "--topic-b", "bench.chain.b",
                                "--group", "bench-chain", "--receiver", receiver.url + CHAIN_PATH],
                      stack.logdir / "chain.log")
        for t in ("bench.chain.a", "bench.chain.b"):
            create_topic(bootstrap, t, PARTITIONS)
        chain.start()
        try:
            wait_port("127.0.0.1", chain_port, 30, chain.proc, "chain baseline")
            before = receiver.count()
            run_open(_spec(chain_port, "/v1/reports", partial(workload.paging_requests, "chain-warm", 0, warm)))
            receiver.wait_count(before + int(0.95 * warm), 60)
            before = receiver.count()
            with CpuMeter({"chain": chain.proc.pid}) as chain_cpu:  # type: ignore[union-attr]
                t1 = time.perf_counter()
                base = run_open(_spec(chain_port, "/v1/reports", partial(workload.paging_requests, "chain", warm, n)))
                receiver.wait_count(before + n, settle_s)
                chain_window = time.perf_counter() - t1
            # The steady day's own baseline: the same schedule, the chain paging its severity-5 reports.
            receiver.wait_quiet(2.0, settle_s)
            before = receiver.count()
            chain_steady_args = ("chain-steady", *steady_args[1:])
            with CpuMeter({"chain": chain.proc.pid}) as chain_steady_cpu:  # type: ignore[union-attr]
                base_steady = run_open(_spec(chain_port, "/v1/reports",
                                             partial(workload.steady_requests, *chain_steady_args)))
                receiver.wait_count(before + len(steady_paging), settle_s)
            chain_mb = peak_mb(chain.proc.pid)  # type: ignore[union-attr]
        finally:
            chain.stop()
        hwm = {name: peak_mb(pid) for name, pid in all_pids.items()}
        crashed = stack.crashed()
        pages = receiver.stop()
        v1, scores = _v1_times(bootstrap), _score_times(bootstrap)

    seg = segments(res, requests, pages, v1, scores)
    base_lat = chain_segments(base, pages)
    p50, p99 = pct(seg.total, 0.5), pct(seg.total, 0.99)
    bp50, bp99 = pct(base_lat, 0.5), pct(base_lat, 0.99)
    ctx.log(f"pipeline: p50 {p50 or 0:.0f} ms, p99 {p99 or 0:.0f} ms over {seg.paged:,} pages "
            f"(baseline p50 {bp50 or 0:.0f}, p99 {bp99 or 0:.0f} ms)")
    statuses: dict[int, int] = {}
    for _, _, _, st in res.sent:
        statuses[st] = statuses.get(st, 0) + 1
    svc_cpu = sum(cpu.seconds.get(s, 0.0) for s in SERVICES)
    province_pages = sum(1 for p in pages if p.get("path") == PAGE_PATH and len(p.get("region_code") or "") == 2)
    notes = [
        f"{seg.sent:,} reports scheduled over {res.duration_s:.1f} s; answers {statuses}; {seg.paged:,} paged "
        f"(first `triggered` for the report's cell); {res.connections} connections, {res.late_starts} requests "
        f"waited for one; baseline: {len(base_lat):,} of {len(base.sent):,} reached the receiver",
        "where the time goes, p50 / p99: " + "; ".join(f"{k} {_fmt(v)}" for k, v in seg.legs.items()),
        f"cores busy over the {window:.1f} s window: {cpu.cores(window)} (chain baseline "
        f"{chain_cpu.cores(chain_window)})",
        f"the contact also got {province_pages:,} pages for province incidents (the same reports roll up into "
        "province cells, which rise to `awas` too); they share notify and the receiver with the measured pages",
    ]
    if seg.paged < seg.sent:
        notes.append(f"{seg.sent - seg.paged:,} reports not paged within {settle_s:g} s after the last send")
    if crashed:
        notes.append(f"exited during the run: {', '.join(crashed)}")
    if not _legs_complete(seg):
        notes.append("some legs lack a timestamp (a report missing from reports.v1 or scores.v1 when read)")
    base_cpu_us = 1e6 * chain_cpu.seconds["chain"] / len(base.sent) if base.sent else None
    rows.append(Row(f"pipeline: POST → webhook `triggered` p99, {RATE:g} reports/s, each pages", "ms",
                    p99 or 0.0, bp99 or 0.0, TARGET_P99_MS, p50, p99, bp50, bp99,
                    cpu_us=1e6 * svc_cpu / seg.sent if seg.sent else None,
                    base_cpu_us=base_cpu_us, notes=notes, lower_is_better=True,
                    ratio_target=TARGET_RATIO_ALL_PAGE, cpu_ratio_target=TARGET_CPU_RATIO))

    day = segments(steady, steady_paging, pages, v1, scores)
    d50, d99 = pct(day.total, 0.5), pct(day.total, 0.99)
    base_day = chain_segments(base_steady, pages)
    bd50, bd99 = pct(base_day, 0.5), pct(base_day, 0.99)
    ctx.log(f"pipeline: steady day p50 {d50 or 0:.0f} ms, p99 {d99 or 0:.0f} ms over {day.paged:,} pages")
    day_notes = [
        f"{len(steady.sent):,} reports at {RATE:g}/s over {steady.duration_s:.1f} s, one in {STEADY_PAGE_EVERY} a "
        f"severity-5 report on a fresh cell ({day.sent:,}: they open an incident and page; measured); the others "
        "severity 1-3 on the warm-up's cells, already `awas` with incidents open, so they change "
        f"no level (a busy day's typical report); {day.paged:,} of {day.sent:,} paged",
        "where the time goes, p50 / p99: " + "; ".join(f"{k} {_fmt(v)}" for k, v in day.legs.items()),
        f"cores busy over the {steady_window:.1f} s window: {steady_cpu.cores(steady_window)}",
        f"baseline: the chain on the same schedule, paging its {len(base_day):,} severity-5 reports (p50 "
        f"{bd50 or 0:.0f} ms); CPU per report over all {len(base_steady.sent):,} reports on both sides",
    ]
    rows.append(Row(f"pipeline: POST → webhook `triggered` p99, {RATE:g} reports/s, 1 in {STEADY_PAGE_EVERY} pages",
                    "ms", d99 or 0.0, bd99 or 0.0, TARGET_P99_MS, d50, d99, bd50, bd99,
                    cpu_us=1e6 * sum(steady_cpu.seconds.get(s, 0.0) for s in SERVICES) / len(steady.sent)
                    if steady.sent else None,
                    base_cpu_us=1e6 * chain_steady_cpu.seconds["chain"] / len(base_steady.sent)
                    if base_steady.sent else None, notes=day_notes, lower_is_better=True,
                    ratio_target=TARGET_RATIO_STEADY))
    for name in ("ingest-gateway", "ingest-validator", "scoring", "notify"):
        rows.append(Row(f"peak memory over the pipeline run: {name} (baseline: the chain process)", "MB",
                        hwm.get(name, 0.0), chain_mb, TARGET_SCORING_MB if name == "scoring" else None,
                        lower_is_better=True))
    rows[-1].notes.append("VmHWM at the end of the pipeline run: " + ", ".join(
        f"{k} {v:.0f} MB" for k, v in hwm.items()) + f", chain baseline {chain_mb:.0f} MB")
    return rows


def _legs_complete(seg: Segments) -> bool:
    return all(len(v) == seg.paged for v in seg.legs.values())
