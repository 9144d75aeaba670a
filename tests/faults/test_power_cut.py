"""A power cut of the durable embedded stack (issue 14): every process of it (store, broker,
Redis, the four services) killed with SIGKILL at once under a steady stream of reports, then
started again on the same workdir, as `pantau up --config F --workdir D` would be.

Reconciled by (source, event_id): every report a source was told was accepted is on
pantau.reports.v1 exactly once, every invalid raw message is in the DLQ once, and the incident
opened before the cut was paged once. The table is printed and written to
bench/results/power-cut.md (PANTAU_POWER_CUT_OUT to change it).
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
import urllib.request
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import orjson
import pytest

import cli.stack
from cli.stack import EmbeddedStack, free_port
from tests.faults.traffic import Publisher, Sent, Tail
from tests.notify.peers import HttpReceiver
from tests.utils import fast_notify_section, stack_sections

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "cut-src"
API_KEY = "power-cut-suite-key-0123456789"
RATE = float(os.environ.get("PANTAU_FAULTS_RATE", "50"))
STREAM_S = 12  # of steady stream before the cut, and again after the restart
MERGE_AFTER_S = 2.0  # the store merges while the stream runs, so the cut can land in a merge
CELL = ("35.01", "communal_clash")
WITNESS = ("35.01", "political_violence")  # same region: same scores.v1 partition as CELL


def config_yaml(hook: str) -> str:
    return f"""
{stack_sections()}sources:
  - id: {SOURCE}
    api_key: "{API_KEY}"
    regions: ["65", "35"]
    rate_limit_per_minute: 60000
contacts:
  - {{id: piket, name: "Piket Jatim", webhook: "{hook}/piket"}}
channels:
  - {{id: hook, type: webhook, url: "{hook}/default", secret: "power-cut-webhook-secret-0123-Vq8Zm4Lr", timeout_s: 2,
      max_attempts: 50, backoff_initial_s: 0.1, backoff_max_s: 1.0}}
policies:
  - id: jatim
    match: {{region: "35.01", categories: [{CELL[1]}, {WITNESS[1]}], min_level: awas}}
    steps: [{{notify: ["contact:piket"], wait_minutes: 1440}}]
{fast_notify_section(free_port(), "power-cut-link-secret-0123456789ab-Xk3P", operators=False)}"""


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    h = HttpReceiver()
    yield h
    h.close()


def power_cut(stack: EmbeddedStack) -> int:
    """SIGKILL to every process of the stack in one sweep, then reap them."""
    procs = [c.proc for c in stack.children.values() if c.proc is not None and c.proc.poll() is None]
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        p.wait()
    return len(procs)


def log(msg: str) -> None:
    print(f"[power-cut {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def where_it_stopped(witness: Sent, tail: Tail, logdir: Path) -> str:
    """Which stage the witness report did not get past, and what each service logged last: a
    CI run that fails here leaves nothing else to read."""
    with tail.cond:
        on_v1 = (SOURCE, witness.event_id) in tail.v1
        scores = [s["level"] for s in tail.scores if (s["region_code"], s["category"]) == WITNESS]
    escalated = WITNESS in tail.incident_cell().values()
    lines = [f"witness {witness.event_id}: answers {dict(witness.answers)}, on reports.v1 {on_v1}, "
             f"levels on scores.v1 {scores}, on escalations.v1 {escalated}"]
    for path in sorted(logdir.glob("*.log")):
        tail_lines = [ln for ln in path.read_text(errors="replace").splitlines() if "aiokafka" not in ln][-15:]
        lines += [f"--- {path.name} (last {len(tail_lines)} lines without aiokafka's)", *tail_lines]
    return "\n".join(lines)


def merged_away(stack: EmbeddedStack) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.store_port}/_requests", timeout=10) as r:
        return json.load(r).get("batches merged away", {}).get("count", 0)


def test_power_cut_loses_and_duplicates_nothing(hook: HttpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.stack, "MERGE_AFTER_S", MERGE_AFTER_S)
    tmp = Path(tempfile.mkdtemp(prefix="pantau-power-cut-"))
    cfg = tmp / "pantau.yaml"
    cfg.write_text(config_yaml(hook.url))
    stack = EmbeddedStack(cfg, tmp, durable=True)
    stack.start()
    bootstrap = stack.config.kafka.bootstrap_servers
    tail = Tail(bootstrap, stack.config.kafka.partitions)
    pub = Publisher(f"http://127.0.0.1:{stack.config.ingest.port}", API_KEY, bootstrap, SOURCE, RATE)
    started = time.monotonic()
    try:
        tail.start()
        pub.start()
        pub.phase = "before"
        first = pub.inject(pub.report(*CELL, 5, title="Bentrok, ada korban jiwa"))
        hook.wait_page("piket", CELL[1], "triggered", timeout=120)
        assert pub.wait(lambda p: len(p.sent) >= RATE * STREAM_S, 120)

        merged = merged_away(stack)
        assert merged > 0, "the store merged nothing while the stream ran"
        pub.phase = "after"
        killed = power_cut(stack)
        log(f"power cut: {killed} processes killed with SIGKILL at once, {len(pub.sent)} reports sent so far, "
            f"{merged} batches merged away by the store before it")
        t0 = time.monotonic()
        stack = EmbeddedStack(cfg, tmp, durable=True)
        stack.start()
        log(f"stack started again on the same workdir in {time.monotonic() - t0:.1f}s")
        n_after = len(pub.sent)
        assert pub.wait(lambda p: len(p.sent) >= n_after + RATE * STREAM_S, 180)
        witness = pub.inject(pub.report(*WITNESS, 5, title="Intimidasi terhadap calon"))
        try:
            hook.wait_page("piket", WITNESS[1], "triggered", timeout=180)
        except TimeoutError:
            print(where_it_stopped(witness, tail, stack.logdir), flush=True)
            raise
        pub.stop_stream()
        assert pub.wait(lambda p: not p.unanswered(), 180), f"{len(pub.unanswered())} reports never answered"

        accepted = {s.event_id for s in pub.sent.values() if s.accepted}
        invalid = {s.event_id for s in pub.sent.values() if s.kind != "valid" and s.outcome}
        drained = tail.wait(lambda t: {(SOURCE, e) for e in accepted} <= t.v1.keys()
                            and invalid <= {d["event_id"] for d in t.dlq}, 180)
        log(f"drained: {drained}")
    finally:
        pub.close()
        tail.close()
        stack.stop()

    rows = reconcile(pub, tail, hook, first.event_id)
    text = render(rows, time.monotonic() - started)
    out = Path(os.environ.get("PANTAU_POWER_CUT_OUT", ROOT / "bench" / "results" / "power-cut.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Power cut of the durable embedded stack (make test-faults)\n\n" + text)
    print("\n" + text + f"\nwritten to {out}; service logs: {tmp / 'logs'}")
    lost = sum(r["lost"] for r in rows.values())
    duplicated = sum(r["duplicated"] for r in rows.values())
    assert (lost, duplicated) == (0, 0), f"lost {lost}, duplicated {duplicated}; see {out}"


def reconcile(pub: Publisher, tail: Tail, hook: HttpReceiver, first_id: str) -> dict[str, dict]:
    rows: dict[str, dict] = {p: defaultdict(int, details=[]) for p in ("before", "after")}
    with tail.cond:
        v1 = {k: list(v) for k, v in tail.v1.items()}
        dlq = list(tail.dlq)
        raw = dict(tail.raw)
    dlq_by_origin: dict[tuple[int, int], int] = defaultdict(int)
    for d in dlq:
        dlq_by_origin[(d["partition"], d["offset"])] += 1
    raw_by_event: dict[str, list] = defaultdict(list)
    for origin, eid in raw.items():
        if eid:
            raw_by_event[eid].append(origin)
    for s in pub.sent.values():
        row = rows[s.phase]
        row["sent"] += 1
        row["retries"] += s.retries
        copies = len(v1.get((SOURCE, s.event_id), []))
        if s.kind == "valid":
            row["accepted"] += s.accepted
            row["on_v1"] += copies > 0
            if not s.accepted or not copies:
                row["lost"] += 1
                row["details"].append(f"{s.event_id} ({s.path}): {s.outcome}, {copies} on reports.v1, "
                                      f"answers {dict(s.answers)}")
            if copies > 1:
                row["duplicated"] += copies - 1
                row["details"].append(f"{s.event_id} ({s.path}) on reports.v1 {copies} times")
            continue
        row["invalid"] += 1
        origins = raw_by_event.get(s.event_id, [])
        if copies:
            row["duplicated"] += copies
            row["details"].append(f"invalid {s.event_id} on reports.v1")
        if not origins or any(dlq_by_origin.get(o, 0) == 0 for o in origins):
            row["lost"] += 1
            row["details"].append(f"invalid {s.event_id} ({s.kind}) not in the DLQ for every raw copy")
        else:
            row["in_dlq"] += 1
        extra = sum(max(0, dlq_by_origin.get(o, 0) - 1) for o in origins)
        if extra:
            row["duplicated"] += extra
            row["details"].append(f"invalid {s.event_id} in the DLQ {extra} extra times")
    pages = hook.pages("piket", CELL[1])
    rows["before"]["pages"] = len(pages)
    if len(pages) != 1:
        rows["before" if not pages else "after"]["duplicated" if pages else "lost"] += abs(len(pages) - 1) or 1
        rows["after"]["details"].append(f"the incident of {CELL} was paged {len(pages)} times: "
                                        f"{[orjson.loads(p.body)['status'] for p in pages]}")
    return rows


def render(rows: dict[str, dict], elapsed_s: float) -> str:
    lines = ["| reports first sent | sent | accepted | on reports.v1 | invalid → in DLQ | publisher retries | lost "
             "| duplicated |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        label = "before the cut" if name == "before" else "during the cut and after the restart"
        lines.append(f"| {label} | {r['sent']:,} | {r['accepted']:,} | {r['on_v1']:,} | {r['invalid']} → "
                     f"{r['in_dlq']} | {r['retries']:,} | {r['lost']} | {r['duplicated']} |")
    details = [f"- {d}" for r in rows.values() for d in r["details"][:30]]
    return "\n".join([f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {RATE:.0f} reports/s offered, "
                      f"{elapsed_s / 60:.1f} min; the incident opened before the cut was paged "
                      f"{rows['before']['pages']} time(s).", "", *lines, "", *details]) + "\n"
