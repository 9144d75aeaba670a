"""`pantau up --config F --workdir D` keeps what it acknowledged across a Ctrl-C and a second
`pantau up` on the same workdir: reports, consumer offsets, scoring baselines, dedup state and
incidents, and nobody is paged twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from cli.stack import free_port, port_open, wait_port
from shared import topics
from shared.config import load
from tests.conftest import write_config
from tests.notify.peers import HttpReceiver
from tests.utils import auth, collect, fast_notify_section, report, value, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

OP_TOKEN = "restart-operator-token-0123456789"
HOOK_SECRET = "restart-webhook-secret-0123456789"
N = 30
BASELINE_CAT = "other"  # the cell the N reports count in; no policy pages for it
PAGED_CAT = "communal_clash"
WITNESS_CAT = "political_violence"
CHANGELOG = "pantau-scoring-baselines-changelog"
GROUPS = {"pantau-scoring": topics.REPORTS_V1, "pantau-notify": topics.SCORES_V1}


def restart_yaml(hook: str) -> str:
    return f"""
operators:
  - {{id: op, name: "Operator", token: "{OP_TOKEN}"}}
contacts:
  - {{id: piket, name: "Piket Tarakan", webhook: "{hook}/piket"}}
channels:
  - {{id: hook, type: webhook, url: "{hook}/default", secret: "{HOOK_SECRET}", timeout_s: 2}}
policies:
  - id: tarakan
    match: {{region: "65.71", categories: [{PAGED_CAT}, {WITNESS_CAT}], min_level: awas}}
    steps: [{{notify: ["contact:piket"], wait_minutes: 1440}}]
scoring:
  web_port: {free_port()}
  tick_interval_s: 1
{fast_notify_section(free_port(), "restart-link-secret-0123456789abcdef", operators=False)}"""


class Up:
    """`pantau up` as a user runs it, in the foreground of its own session."""

    def __init__(self, cfg_path: Path, workdir: Path):
        self.cfg = load(cfg_path)
        self.log = workdir.parent / f"up-{time.monotonic_ns()}.out"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--config", str(cfg_path),
                                          "--workdir", str(workdir)], stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def ready(self) -> "Up":
        for port in (self.cfg.ingest.port, self.cfg.notify.port, self.cfg.scoring.web_port):
            wait_port("127.0.0.1", port, 120, self.proc, "pantau up")
        wait_for("pantau up saying it is up", lambda: "Ctrl-C stops everything" in self.output, 30)
        return self

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def ctrl_c(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(90) == 0, self.output

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def hook() -> Iterator[HttpReceiver]:
    h = HttpReceiver()
    yield h
    h.close()


def post(gw: httpx.Client, body: dict[str, Any], status: int) -> None:
    deadline = time.monotonic() + 60
    while True:  # 503 while a consumer group is still joining is fine: retry as a source does
        r = gw.post("/v1/reports", content=orjson.dumps(body), headers=auth())
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == status, r.text


def v1_reports(bootstrap: str, want: set[str]) -> list[dict]:
    """Every report on reports.v1, read until each of `want` has been seen."""
    msgs = asyncio.run(collect(bootstrap, [topics.REPORTS_V1], lambda ms: want <= {value(m)["event_id"] for m in ms},
                               timeout_s=60))
    return [value(m) for m in msgs]


def cell(bootstrap: str, category: str, observed: int) -> dict:
    """The scoring cell of (65.71, category) as its changelog last holds it, once it counts
    `observed` reports in its running bucket. A score update is only sent when the level
    changes, so the cell itself is where a baseline is seen."""
    key = f"65.71|{category}".encode()

    def latest(ms: list[Any]) -> dict | None:
        mine = [m for m in ms if m.key == key and m.value]
        return value(mine[-1]) if mine else None

    msgs = asyncio.run(collect(bootstrap, [CHANGELOG], lambda ms: (latest(ms) or {}).get("observed") == observed,
                               timeout_s=90))
    return latest(msgs)  # type: ignore[return-value]


def committed(bootstrap: str) -> dict[str, dict[int, int]]:
    """Each service group's committed offsets on the topic it reads."""
    async def go() -> dict[str, dict[int, int]]:
        out = {}
        for group, topic in GROUPS.items():
            c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
            await c.start()
            try:
                out[group] = {p: (await c.committed(TopicPartition(topic, p))) or 0 for p in range(4)}
            finally:
                await c.stop()
        return out

    return asyncio.run(go())


def test_ctrl_c_and_start_again_keeps_everything_acknowledged(tmp_path: Path, hook: HttpReceiver) -> None:
    cfg_path = write_config(tmp_path / "pantau.yaml", restart_yaml(hook.url))
    workdir = tmp_path / "work"
    up = Up(cfg_path, workdir)
    cfg = up.cfg
    bootstrap = cfg.kafka.bootstrap_servers
    gw = httpx.Client(base_url=f"http://127.0.0.1:{cfg.ingest.port}", timeout=30)
    api = httpx.Client(base_url=f"http://127.0.0.1:{cfg.notify.port}", timeout=10,
                       headers={"Authorization": f"Bearer {OP_TOKEN}"})
    try:
        up.ready()
        assert "mode: durable" in up.output

        # Before: N reports in one cell (its running bucket is the baseline state), and one
        # severity-5 report that opens an incident and pages the piket once.
        sent = [report(region_code="65.71.02", category=BASELINE_CAT, severity=2) for _ in range(N)]
        for body in sent:
            post(gw, body, 202)
        sev5 = report(region_code="65.71.02", category=PAGED_CAT, severity=5, title="Bentrok dua kelompok warga")
        post(gw, sev5, 202)
        page = hook.wait_page("piket", PAGED_CAT, "triggered", timeout=120)
        incident = page.json()["incident_id"]
        before_cell = cell(bootstrap, BASELINE_CAT, N)
        accepted = {b["event_id"] for b in sent} | {sev5["event_id"]}
        on_v1 = v1_reports(bootstrap, accepted)
        # Every group has committed past every message it was given before we stop it. The
        # ends are read again each time: a later step (the province's update, an escalation)
        # may still land after the page, and a first snapshot would then be stale.
        seen: list = []

        def caught_up() -> bool:
            seen.append(({g: _ends(bootstrap, t) for g, t in GROUPS.items()}, committed(bootstrap)))
            return seen[-1][0] == seen[-1][1]

        wait_for(lambda: f"committed offsets reaching the ends (last seen ends, committed: {seen[-1]})", caught_up, 90)
        before_offsets = committed(bootstrap)

        up.ctrl_c()
        assert not port_open("127.0.0.1", cfg.ingest.port)

        up = Up(cfg_path, workdir).ready()
        assert "mode: durable" in up.output
        # Offsets as they were: read before anything new is sent.
        assert committed(bootstrap) == before_offsets
        again = v1_reports(bootstrap, accepted)
        assert sorted(r["event_id"] for r in again) == sorted(r["event_id"] for r in on_v1)
        assert len(again) == len(accepted), "a report is on reports.v1 twice"

        post(gw, sent[0], 200)  # Redis and the broker agree: a re-sent report is a duplicate
        one_more = report(region_code="65.71.02", category=BASELINE_CAT, severity=2)
        post(gw, one_more, 202)
        after_cell = cell(bootstrap, BASELINE_CAT, N + 1)  # counted on top of the N from before
        baseline = ("bucket", "since", "history")
        assert {k: after_cell[k] for k in baseline} == {k: before_cell[k] for k in baseline}

        # The incident is still open, and nobody is paged twice: a witness incident in the same
        # region (so the same scores.v1 partition, behind anything notify replays) pages once,
        # and by then the first incident still has its one page.
        open_ids = [i["id"] for i in api.get("/v1/incidents", params={"status": "open"}).json()["incidents"]]
        assert incident in open_ids
        post(gw, report(region_code="65.71.02", category=WITNESS_CAT, severity=5, title="Intimidasi calon"), 202)
        hook.wait_page("piket", WITNESS_CAT, "triggered", timeout=120)
        assert len(hook.pages("piket", PAGED_CAT)) == 1, [r.json()["status"] for r in hook.pages("piket", PAGED_CAT)]
        up.ctrl_c()
    finally:
        gw.close()
        api.close()
        up.kill()


def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    """Next offset per partition, from the high watermark of fetch responses (Tansu's
    ListOffsets answers the last batch's base offset + 1)."""
    async def go() -> dict[int, int]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await c.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(4)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                await c.getmany(timeout_ms=200, max_records=10_000)
                hw = {tp.partition: c.highwater(tp) for tp in tps}
                positions = [await c.position(tp) for tp in tps]
                if all(h is not None and pos >= h for pos, h in zip(positions, hw.values())):
                    return hw  # type: ignore[return-value]
            raise TimeoutError(f"could not read {topic} to its end")
        finally:
            await c.stop()

    return asyncio.run(go())
