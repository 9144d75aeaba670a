"""Reliability under faults (issue 6): the whole pipeline on the embedded stack, with a steady
stream of reports, while every moving part is killed, restarted, failed or paused in turn.

The publisher (tests/faults/traffic.py) sends ~50 reports a second, mostly over HTTP, some
straight onto the raw topic, some of those deliberately invalid. In each fault phase two
severity-5 reports go to a (kabupaten/kota, category) cell that nothing else touches, so each
must open exactly one incident and page the phase's own contact exactly once, on its webhook
and by e-mail (`triggered`, step 0; the policy has one step with a day's wait).

Phases, in order: steady (no fault), kill -9 of the gateway, of the validator, of the scoring
worker and of notify (each restarted by the test), a Redis restart on the same port and AOF
directory, the webhook receiver answering 500 then recovering, the SMTP server refusing then
accepting, and the broker stopped (SIGSTOP) then continued.

At the end every report sent is reconciled against pantau.reports.v1 (each accepted one
exactly once by (source, event_id)), the DLQ (each invalid raw message once, with its reason)
and the receivers (each expected page delivered, one X-Pantau-Delivery id per page), and a
table per phase is printed and written to bench/results/faults.md (PANTAU_FAULTS_OUT to change
it). Nothing here sleeps to assert: every wait is on a receiver, a topic or a process.
"""

from __future__ import annotations

import os
import platform
import re
import signal
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import orjson
import pytest

from bench.report import git_commit
from cli.stack import EmbeddedStack, free_port
from tests.faults.traffic import CATEGORIES, Publisher, Sent, Tail
from tests.notify.peers import Answer, HttpReceiver, Request, SmtpServer
from tests.utils import fast_notify_section, stack_sections

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "fault-src"
API_KEY = "fault-suite-key-0123456789"
HOOK_SECRET = "fault-suite-webhook-secret-0123-Lp5x"
LINK_SECRET = "fault-suite-link-secret-0123456789"
RATE = float(os.environ.get("PANTAU_FAULTS_RATE", "50"))
PHASE_MIN_REPORTS = int(RATE * 12)  # each phase lasts at least ~12 s of the stream
PAGE_TIMEOUT_S = 120


@dataclass
class Phase:
    name: str
    fault: str
    cells: list[tuple[str, str]] = field(default_factory=list)

    @property
    def contact(self) -> str:
        return f"pc-{self.name}"


PHASES = [Phase(n, f) for n, f in [
    ("steady", "none (baseline)"),
    ("gateway-kill", "kill -9 ingest gateway, restart"),
    ("validator-kill", "kill -9 raw-topic validator, restart"),
    ("scoring-kill", "kill -9 scoring worker, restart"),
    ("notify-kill", "kill -9 notify, restart"),
    ("redis-restart", "Redis stopped and started (same port, AOF dir)"),
    ("webhook-500", "webhook receiver answers 500, then 200"),
    ("smtp-refuse", "SMTP answers 451 to DATA, then accepts"),
    ("broker-pause", "broker SIGSTOP, then SIGCONT"),
]]
# Two cells per phase, in two provinces (Jawa Timur, Jawa Tengah), one category per phase:
# no (province, category) has two alarming kabupaten/kota, so no province roll-up pages.
for i, _p in enumerate(PHASES):
    _p.cells = [(f"35.{i + 1:02d}", CATEGORIES[i]), (f"33.{i + 1:02d}", CATEGORIES[i])]


class Hook(HttpReceiver):
    """The contacts' webhook endpoint; answers 500 while `failing` is set."""

    failing = False

    def respond(self, req: Request) -> Answer:
        if self.failing:
            return Answer(500, b'{"error": "receiver down"}', {"Content-Type": "application/json"})
        return Answer()


def config_yaml(hook: str, smtp_port: int) -> str:
    contacts = "\n".join(f'  - {{id: {p.contact}, name: "Kontak {p.name}", webhook: "{hook}/c/{p.name}", '
                         f'email: "{p.name}@faults.pantau.id"}}' for p in PHASES)
    policies = "\n".join(
        f'  - {{id: {p.name}-{j}, match: {{region: "{region}", categories: [{cat}], min_level: awas}}, '
        f'steps: [{{notify: ["contact:{p.contact}"], wait_minutes: 1440}}]}}'
        for p in PHASES for j, (region, cat) in enumerate(p.cells))
    notify_port = free_port()
    return f"""
{stack_sections()}sources:
  - id: {SOURCE}
    api_key: "{API_KEY}"
    regions: ["65", "35", "33"]
    rate_limit_per_minute: 60000
contacts:
{contacts}
channels:
  - {{id: hook, type: webhook, url: "{hook}/default", secret: "{HOOK_SECRET}", timeout_s: 2, max_attempts: 50,
      backoff_initial_s: 0.1, backoff_max_s: 1.0}}
  - {{id: mail, type: email, host: 127.0.0.1, port: {smtp_port}, starttls: false,
      sender: "Pantau <pantau@faults.pantau.id>", timeout_s: 2, max_attempts: 50, backoff_initial_s: 0.1,
      backoff_max_s: 1.0}}
policies:
{policies}
{fast_notify_section(notify_port, LINK_SECRET, operators=False)}"""


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    s = SmtpServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def stack(hook: Hook, smtp: SmtpServer) -> Iterator[EmbeddedStack]:
    # Outside pytest's temporary folders (which keep only the last few runs), so the service
    # logs of a failed run are still there to read.
    tmp = Path(tempfile.mkdtemp(prefix="pantau-faults-"))
    cfg = tmp / "pantau.yaml"
    cfg.write_text(config_yaml(hook.url, smtp.port))
    s = EmbeddedStack(cfg, tmp)
    try:
        s.start()
        yield s
    finally:
        s.stop()
        print(f"\nservice logs: {s.logdir}")


# --------------------------------------------------------------------------- what was delivered
def _webhook_pages(hook: Hook, phase: Phase) -> list[tuple[Request, dict]]:
    """Requests to the phase's contact that were answered 2xx, with their bodies."""
    out = []
    for r in hook.requests:
        if r.path == f"/c/{phase.name}" and r.status is not None and 200 <= r.status < 300:
            out.append((r, orjson.loads(r.body)))
    return out


def _mails(smtp: SmtpServer, phase: Phase) -> list[tuple[str, str]]:
    """(delivery id, incident id) of each mail the phase's contact received."""
    out = []
    for m in smtp.received:
        if f"{phase.name}@faults.pantau.id" in m.rcpt_tos:
            msg = m.message
            out.append((msg["X-Pantau-Delivery"], msg["X-Pantau-Incident"]))
    return out


def page_ids(hook: Hook, smtp: SmtpServer, tail: Tail, phase: Phase) -> tuple[dict, list[str]]:
    """{(cell, channel): {delivery ids}} for the phase's `triggered` pages, and every other
    page its contact got (unexpected: another status, or a cell not of this phase)."""
    got: dict[tuple[tuple[str, str], str], set[str]] = defaultdict(set)
    unexpected: list[str] = []
    for r, b in _webhook_pages(hook, phase):
        cell = (b["region_code"], b["category"])
        if cell in phase.cells and b["status"] == "triggered":
            got[(cell, "webhook")].add(r.headers.get("x-pantau-delivery", ""))
        else:
            unexpected.append(f"webhook {b['status']} {cell} {r.headers.get('x-pantau-delivery')}")
    cells = tail.incident_cell()
    for did, incident in _mails(smtp, phase):
        cell = cells.get(incident)
        if cell in phase.cells:
            got[(cell, "email")].add(did)
        else:
            unexpected.append(f"email for {incident} ({cell}) {did}")
    return got, unexpected


def pages_done(hook: Hook, smtp: SmtpServer, tail: Tail, phase: Phase) -> bool:
    got, _ = page_ids(hook, smtp, tail, phase)
    return all(got.get((cell, ch)) for cell in phase.cells for ch in ("webhook", "email"))


# --------------------------------------------------------------------------- the run
class Run:
    """The stack, the instruments and a log of what the test did, for one suite run."""

    def __init__(self, stack: EmbeddedStack, hook: Hook, smtp: SmtpServer):
        self.stack, self.hook, self.smtp = stack, hook, smtp
        bootstrap = stack.config.kafka.bootstrap_servers
        self.tail = Tail(bootstrap, stack.config.kafka.partitions)
        self.pub = Publisher(f"http://127.0.0.1:{stack.config.ingest.port}", API_KEY, bootstrap, SOURCE, RATE)
        self.notes: list[str] = []
        self.sev5: dict[str, list[Sent]] = defaultdict(list)
        self.stray = 0  # pages to nobody's phase contact (there should be none)

    def log(self, msg: str) -> None:
        print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def inject(self, phase: Phase, path: str = "http") -> list[Sent]:
        sent = [self.pub.inject(self.pub.report(region, cat, 5, title="Bentrok, ada korban jiwa"), path)
                for region, cat in phase.cells]
        self.sev5[phase.name].extend(sent)
        return sent

    def restart(self, name: str) -> None:
        t0 = time.monotonic()
        self.stack.start_service(name)
        self.log(f"{name} restarted, listening after {time.monotonic() - t0:.1f}s")

    def check_crashes(self, phase: Phase) -> None:
        """A service that died without being killed is restarted, and noted."""
        for name in self.stack.crashed():
            code = self.stack.children[name].proc.returncode
            self.notes.append(f"{phase.name}: {name} exited on its own (code {code}); restarted")
            self.log(self.notes[-1])
            if name in ("broker", "redis"):
                getattr(self.stack, f"start_{name}")()
            else:
                self.restart(name)

    def in_phase(self, phase: Phase) -> int:
        with self.pub.cond:
            return sum(1 for s in self.pub.sent.values() if s.phase == phase.name)


def fault_steady(run: Run, phase: Phase) -> None:
    run.inject(phase)


def fault_gateway_kill(run: Run, phase: Phase) -> None:
    run.inject(phase)
    run.stack.kill("ingest-gateway")
    run.log("ingest-gateway killed (SIGKILL)")
    run.restart("ingest-gateway")


def fault_validator_kill(run: Run, phase: Phase) -> None:
    sent = run.inject(phase, path="raw")
    ids = {s.event_id for s in sent}
    # Killed once its two raw messages are on the raw topic: it is reading or writing them.
    run.tail.wait(lambda t: ids <= set(t.raw.values()), 60)
    run.stack.kill("ingest-validator")
    run.log("ingest-validator killed (SIGKILL)")
    run.restart("ingest-validator")


def fault_scoring_kill(run: Run, phase: Phase) -> None:
    sent = run.inject(phase)
    first = (SOURCE, sent[0].event_id)
    run.tail.wait(lambda t: first in t.v1, 60)  # on reports.v1: scoring is taking it now
    run.stack.kill("scoring")
    run.log("scoring killed (SIGKILL) as its severity-5 report reached reports.v1")
    run.restart("scoring")


def fault_notify_kill(run: Run, phase: Phase) -> None:
    run.inject(phase)
    region, cat = phase.cells[0]
    run.tail.wait(lambda t: t.scored(region, cat), 90)  # the awas score is on scores.v1: notify is on it
    run.stack.kill("notify")
    run.log("notify killed (SIGKILL) as the awas score update reached scores.v1")
    run.restart("notify")


def fault_redis_restart(run: Run, phase: Phase) -> None:
    run.inject(phase)
    t0 = time.monotonic()
    run.stack.restart("redis")
    run.log(f"redis restarted (SIGTERM, start on the same port and AOF dir) in {time.monotonic() - t0:.1f}s")


def fault_webhook_500(run: Run, phase: Phase) -> None:
    run.hook.failing = True
    run.inject(phase)
    path = f"/c/{phase.name}"
    run.hook.wait_for(lambda rs: sum(1 for r in rs if r.path == path and r.status == 500) >= 6, 90)
    run.hook.failing = False
    run.log("webhook receiver answered 500 six times to this phase's pages; recovered")


def fault_smtp_refuse(run: Run, phase: Phase) -> None:
    refused = len(run.smtp.refusals.items)
    run.smtp.refuse_next(4)
    run.inject(phase)
    run.smtp.refusals.wait_for(lambda items: len(items) >= refused + 4, 90)
    run.log("SMTP refused 4 DATA commands (451); accepting again")


def fault_broker_pause(run: Run, phase: Phase) -> None:
    pid = run.stack.children["broker"].proc.pid
    before = run.pub.answers()
    os.kill(pid, signal.SIGSTOP)
    run.log("broker stopped (SIGSTOP)")
    try:
        run.inject(phase)
        # Paused until the publisher has been told 503 (or timed out) a good number of times.
        run.pub.wait(lambda p: sum((p.answers() - before)[k] for k in (503, "conn")) >= 20, 30)
    finally:
        os.kill(pid, signal.SIGCONT)
    run.log("broker continued (SIGCONT)")


FAULTS: dict[str, Callable[[Run, Phase], None]] = {
    "steady": fault_steady, "gateway-kill": fault_gateway_kill, "validator-kill": fault_validator_kill,
    "scoring-kill": fault_scoring_kill, "notify-kill": fault_notify_kill, "redis-restart": fault_redis_restart,
    "webhook-500": fault_webhook_500, "smtp-refuse": fault_smtp_refuse, "broker-pause": fault_broker_pause,
}


# --------------------------------------------------------------------------- reconciliation
@dataclass
class Row:
    phase: str
    fault: str
    sent: int = 0
    accepted: int = 0
    on_v1: int = 0
    invalid: int = 0
    in_dlq: int = 0
    retries: int = 0
    pages_expected: int = 0
    pages_delivered: int = 0
    lost_reports: int = 0
    lost_dlq: int = 0
    lost_pages: int = 0
    dup_reports: int = 0
    dup_dlq: int = 0
    dup_pages: int = 0
    dup_after_503: int = 0  # a report answered 503 that was on reports.v1 all the same
    details: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.lost_reports + self.lost_dlq + self.lost_pages

    @property
    def duplicated(self) -> int:
        return self.dup_reports + self.dup_dlq + self.dup_pages


def reconcile(run: Run) -> list[Row]:
    tail, pub = run.tail, run.pub
    with pub.cond:
        sent = list(pub.sent.values())
    with tail.cond:
        v1 = {k: list(v) for k, v in tail.v1.items()}
        raw = dict(tail.raw)
        dlq = list(tail.dlq)
    dlq_by_origin: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for d in dlq:
        dlq_by_origin[(d["partition"], d["offset"])].append(d)
    raw_by_event: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for origin, eid in raw.items():
        if eid:
            raw_by_event[eid].append(origin)

    rows = {p.name: Row(p.name, p.fault) for p in PHASES}
    for s in sent:
        row = rows[s.phase]
        row.sent += 1
        row.retries += s.retries
        copies = v1.get((SOURCE, s.event_id), [])
        if s.kind == "valid":
            if s.accepted:
                row.accepted += 1
            else:
                row.lost_reports += 1
                row.details.append(f"{s.event_id} ({s.path}) never accepted: {s.outcome}, answers {dict(s.answers)}")
            if copies:
                row.on_v1 += 1
            elif s.accepted:
                row.lost_reports += 1
                row.details.append(f"{s.event_id} ({s.path}) accepted ({s.outcome}) but not on reports.v1")
            if len(copies) > 1:
                row.dup_reports += len(copies) - 1
                if s.answers.get(503):
                    row.dup_after_503 += len(copies) - 1
                row.details.append(f"{s.event_id} ({s.path}) on reports.v1 {len(copies)} times, ingest_ids "
                                   f"{copies}; answers {dict(s.answers)}")
            continue
        # An invalid raw report: every raw message carrying it in the DLQ once, with its reason.
        row.invalid += 1
        if copies:
            row.dup_reports += len(copies)
            row.details.append(f"invalid {s.event_id} ({s.kind}) on reports.v1")
        origins = raw_by_event.get(s.event_id, [])
        if s.outcome != "produced" or not origins:
            row.lost_dlq += 1
            row.details.append(f"invalid {s.event_id} ({s.kind}) not on the raw topic: {s.outcome}")
            continue
        ok = True
        for o in origins:
            recs = dlq_by_origin.get(o, [])
            if not recs:
                ok = False
                row.lost_dlq += 1
                row.details.append(f"invalid {s.event_id} raw {o} not in the DLQ")
            elif any(r["reason"] != s.kind for r in recs):
                ok = False
                row.lost_dlq += 1
                row.details.append(f"invalid {s.event_id} raw {o} in the DLQ as {[r['reason'] for r in recs]}, "
                                   f"not {s.kind}")
            if len(recs) > 1:
                row.dup_dlq += len(recs) - 1
                row.details.append(f"invalid {s.event_id} raw {o} in the DLQ {len(recs)} times")
        row.in_dlq += ok

    cells = tail.incident_cell()
    for p in PHASES:
        row = rows[p.name]
        got, unexpected = page_ids(run.hook, run.smtp, tail, p)
        for cell in p.cells:
            for ch in ("webhook", "email"):
                row.pages_expected += 1
                ids = got.get((cell, ch), set())
                if ids:
                    row.pages_delivered += 1
                else:
                    row.lost_pages += 1
                    row.details.append(f"page {cell} by {ch} to {p.contact} never delivered")
                if len(ids) > 1:
                    row.dup_pages += len(ids) - 1
                    row.details.append(f"page {cell} by {ch} delivered under {len(ids)} ids: {sorted(ids)}")
        row.dup_pages += len(unexpected)
        row.details.extend(f"unexpected page to {p.contact}: {u}" for u in unexpected)
        for cell in p.cells:  # one incident per cell on pantau.escalations.v1
            incidents = {i for i, c in cells.items() if c == cell}
            if len(incidents) > 1:
                row.dup_pages += len(incidents) - 1
                row.details.append(f"{len(incidents)} incidents for {cell} on escalations.v1: {sorted(incidents)}")
    return list(rows.values())


def render(rows: list[Row], run: Run, elapsed_s: float) -> str:
    head = ("| phase | fault | reports sent | accepted | on reports.v1 | invalid → in DLQ | publisher retries "
            "| escalations expected | delivered | lost | duplicated |")
    lines = [head, "|" + "---|" * 2 + "---:|" * 9]
    total = Row("**total**", "")
    for r in rows:
        lines.append(f"| {r.phase} | {r.fault} | {r.sent:,} | {r.accepted:,} | {r.on_v1:,} | {r.invalid} → {r.in_dlq} "
                     f"| {r.retries:,} | {r.pages_expected} | {r.pages_delivered} | {r.lost} | {r.duplicated} |")
        for f in ("sent", "accepted", "on_v1", "invalid", "in_dlq", "retries", "pages_expected", "pages_delivered",
                  "lost_reports", "lost_dlq", "lost_pages", "dup_reports", "dup_dlq", "dup_pages"):
            setattr(total, f, getattr(total, f) + getattr(r, f))
    t = total
    lines.append(f"| **total** | | {t.sent:,} | {t.accepted:,} | {t.on_v1:,} | {t.invalid} → {t.in_dlq} | "
                 f"{t.retries:,} | {t.pages_expected} | {t.pages_delivered} | **{t.lost}** | **{t.duplicated}** |")
    commit = git_commit(ROOT)
    out = [f"Fault suite, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, "
           f"{os.cpu_count()} cores ({platform.machine()}), load average {os.getloadavg()[0]:.1f} at the end, "
           f"{RATE:.0f} reports/s offered, {elapsed_s / 60:.1f} min.", "", *lines, ""]
    out.append("Lost = accepted reports missing from reports.v1 + invalid raw messages missing from the DLQ (or "
               "with the wrong reason) + pages never delivered. Duplicated = extra copies of a (source, event_id) "
               "on reports.v1 + extra DLQ records of one raw message + extra X-Pantau-Delivery ids (or unexpected "
               "pages) for one expected page. Escalations: one `triggered` page per severity-5 cell, by webhook "
               "and by e-mail. A report counts in the phase it was first sent in, with all its retries (so "
               "reports in flight when a fault starts count in the phase before).")
    for r in rows:
        if r.dup_after_503:
            run.notes.append(f"{r.phase}: {r.dup_after_503} of {r.dup_reports} extra copies on reports.v1 are "
                             f"reports the gateway answered 503 (\"nothing was accepted\") although their first "
                             f"produce reached the broker; the publisher's retry was then accepted again")
    stray = [f"{r.path} {r.status}" for r in run.hook.requests
             if r.status is not None and 200 <= r.status < 300 and r.path not in {f"/c/{p.name}" for p in PHASES}]
    if stray:
        run.notes.append(f"{len(stray)} pages to no phase's contact: {stray[:10]}")
    run.stray = len(stray)
    details = [d for r in rows for d in (f"{r.phase}: {x}" for x in r.details)]
    if details or run.notes:
        out += ["", "Details:", ""] + [f"- {d}" for d in run.notes + details[:60]]
        if len(details) > 60:
            out.append(f"- … and {len(details) - 60} more")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the test
def test_pipeline_keeps_every_report_and_page_through_faults(stack: EmbeddedStack, hook: Hook, smtp: SmtpServer):
    started = time.monotonic()
    run = Run(stack, hook, smtp)
    run.tail.start()
    run.pub.start()
    try:
        for phase in PHASES:
            run.pub.phase = phase.name
            run.log(f"phase {phase.name}: {phase.fault}")
            FAULTS[phase.name](run, phase)
            run.check_crashes(phase)
            # The phase's pages, and a minimum share of the stream, before the next fault.
            if not run.tail.wait(lambda t: pages_done(hook, smtp, t, phase), PAGE_TIMEOUT_S):
                run.notes.append(f"{phase.name}: pages not all delivered within {PAGE_TIMEOUT_S}s of the fault")
                run.log(run.notes[-1])
            run.pub.wait(lambda p: run.in_phase(phase) >= PHASE_MIN_REPORTS, 120)
            run.check_crashes(phase)
            run.log(f"phase {phase.name} done: {run.in_phase(phase)} reports sent, answers "
                    f"{dict(run.pub.answers(phase.name))}")
        run.pub.stop_stream()

        # Drain: every report answered, then every accepted one on reports.v1 and every invalid
        # raw message in the DLQ.
        if not run.pub.wait(lambda p: not p.unanswered(), 180):
            run.notes.append(f"{len(run.pub.unanswered())} reports still unanswered after 180 s of retrying")
        want_v1 = {(SOURCE, s.event_id) for s in list(run.pub.sent.values()) if s.accepted}
        invalid = {s.event_id for s in list(run.pub.sent.values()) if s.kind != "valid" and s.outcome}

        def drained(t: Tail) -> bool:
            in_dlq = {d["event_id"] for d in t.dlq}
            return want_v1 <= t.v1.keys() and invalid <= in_dlq

        if not run.tail.wait(drained, 180):
            run.notes.append("reports.v1 / DLQ not complete after 180 s of draining")
        run.check_crashes(PHASES[-1])
    finally:
        run.pub.close()
        run.tail.close()

    rows = reconcile(run)
    table = render(rows, run, time.monotonic() - started)
    out = Path(os.environ.get("PANTAU_FAULTS_OUT", ROOT / "bench" / "results" / "faults.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Fault suite (make test-faults)\n\n" + table)
    print("\n" + table + f"\nwritten to {out}")

    lost = sum(r.lost for r in rows)
    duplicated = sum(r.duplicated for r in rows) + run.stray
    assert lost == 0, f"{lost} lost; see {out}"
    assert duplicated == 0, f"{duplicated} duplicated; see {out}"


def test_no_secret_or_issued_token_in_the_fault_runs_logs(stack: EmbeddedStack, hook: Hook, smtp: SmtpServer):
    """Every line every service logged through the kills, restarts and failures above (so it
    runs after them): no configured secret, no Redis password, no ack token Pantau issued."""
    sent = [r.body for r in hook.requests]
    sent += [part for m in smtp.mails.items for part in (m.data, m.message.get_payload(decode=True) or b"")]
    link = re.compile(r"/ack/([A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{22})(?![A-Za-z0-9_-])")
    tokens = {t for body in sent for t in link.findall(body.decode("utf-8", "replace"))}
    assert tokens, "the run issued no ack link to look for"
    needles = {"source API key": API_KEY, "webhook secret": HOOK_SECRET, "link secret": LINK_SECRET,
               "Redis password": stack.redis_password,
               **{f"ack token {t[:12]}...": t for t in tokens}, **{f"ack MAC of {t[:12]}...": t.split(".")[1]
                                                                   for t in tokens}}
    logs = {p.name: p.read_text(errors="replace") for p in sorted(Path(stack.logdir).glob("*.log"))}
    assert {"notify.log", "ingest-gateway.log"} <= logs.keys()
    found = [f"{what} in {name}" for what, needle in needles.items() for name, text in logs.items() if needle in text]
    assert not found, "leaked into the fault run's logs:\n" + "\n".join(found[:20])
