"""Verification on the embedded stack: an operator verifies or rejects a report through the
ingest API or `pantau verify`, and the live scorer moves the report's weight once, across a
kill -9 of the worker and a decision delivered twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Iterator

import httpx
import orjson
import pytest

from cli.stack import EmbeddedStack, free_port
from shared import topics
from shared.problems import MEDIA_TYPE
from tests.conftest import write_config
from tests.scoring.conftest import of, post, scores, started
from tests.scoring.test_service import now_local
from tests.utils import collect, produce, report

TOKEN = "operator-token-budi-0123456789"
CAT = "land_resource_conflict"


@pytest.fixture(scope="module")
def vstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    tmp = tmp_path_factory.mktemp("verification")
    config = write_config(tmp / "pantau.yaml", f"""scoring:
  method: ears-c2
  web_port: {free_port()}
  tick_interval_s: 1
operators:
  - id: budi
    name: Budi Santoso
    token: "{TOKEN}"
""")
    with started(config, tmp) as stack:
        yield stack


@pytest.fixture(scope="module")
def gw(vstack: EmbeddedStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{vstack.config.ingest.port}", timeout=30) as c:
        yield c


def decide(gw: httpx.Client, r: dict, what: str = "verify", token: str = TOKEN) -> httpx.Response:
    return gw.post(f"/v1/reports/{r['source']}/{r['event_id']}/{what}", json={"note": "dicek lewat telepon"},
                   headers={"Authorization": f"Bearer {token}"})


def decided(updates: list[dict], word: str) -> list[dict]:
    return [u for u in updates if any(word in why for why in u["reasons"])]


def cli_verify(stack: EmbeddedStack, r: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "verify", r["source"], r["event_id"], "--note", "cek lapangan",
         "--url", f"http://127.0.0.1:{stack.config.ingest.port}"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PANTAU_OPERATOR_TOKEN": TOKEN})


def test_verify_and_reject_move_the_weight_once_across_a_kill_9(vstack, gw):
    first = report(region_code="65.02", category=CAT, severity=5, occurred_at=now_local())
    post(gw, [first])
    [u] = of(scores(vstack, lambda us: len(us) >= 1, CAT), "65.02")
    assert (u["level"], u["observed"], u["weighted"]) == ("awas", 1, 0.5)  # unverified: half weight

    r = decide(gw, first)
    assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
    updates = scores(vstack, lambda us: len(decided(us, "diverifikasi oleh")) >= 1, CAT)
    [v] = decided(updates, "diverifikasi oleh")
    assert (v["observed"], v["weighted"]) == (1, 1.0)
    assert v["reasons"][-1] == f"laporan {first['event_id']} diverifikasi oleh Budi Santoso"
    assert decide(gw, first).json()["status"] == "unchanged"  # the API sends nothing for a repeat

    # The worker dies; the same decision reaches the topic a second time (another gateway, a
    # retried produce) while it is down. The restarted worker applies it once, in total.
    boot = vstack.config.kafka.bootstrap_servers
    [sent] = asyncio.run(collect(boot, [topics.VERIFICATIONS_V1], lambda ms: len(ms) == 1,
                                 where=lambda m: orjson.loads(m.value)["event_id"] == first["event_id"]))
    vstack.kill("scoring")
    asyncio.run(produce(boot, topics.VERIFICATIONS_V1, [sent.value], key=sent.key))
    vstack.start_service("scoring")

    second = report(region_code="65.02", category=CAT, severity=5, occurred_at=now_local())
    post(gw, [second])
    done = cli_verify(vstack, second)
    assert done.returncode == 0, done.stderr
    assert f"{second['event_id']}: verified" in done.stdout
    updates = scores(vstack, lambda us: len(decided(us, "diverifikasi oleh")) >= 2, CAT, timeout_s=120)
    v2 = decided(updates, "diverifikasi oleh")[-1]
    assert (v2["observed"], v2["weighted"]) == (2, 2.0)  # 1.0 + 1.0, not 2.5: the repeat counted nothing

    r = decide(gw, first, "reject")
    assert r.status_code == 202, r.text
    updates = scores(vstack, lambda us: len(decided(us, "ditolak oleh")) >= 1, CAT)
    [x] = decided(updates, "ditolak oleh")
    assert (x["observed"], x["weighted"], x["report_ids"]) == (1, 1.0, [second["event_id"]])


def test_decisions_need_an_operator_and_a_known_report(vstack, gw):
    unknown = report(event_id="never-sent")
    r = decide(gw, unknown)
    assert r.status_code == 404 and r.headers["content-type"] == MEDIA_TYPE
    assert "never-sent" in r.json()["detail"]
    assert decide(gw, unknown, token="not-a-token").status_code == 401
    bad = gw.post("/v1/reports/fkdm-kaltara/never-sent/verify", json={"note": 5, "extra": 1},
                  headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"note", "extra"}
    done = cli_verify(vstack, unknown)
    assert done.returncode == 5 and "not found" in done.stderr and "Traceback" not in done.stderr


def test_verifying_one_report_lifts_a_quiet_cell_over_its_bound(vstack, gw):
    cat = "political_violence"
    # A cell with no history scores against the cold-start prior: upper bound 4 reports a day.
    eight = [report(region_code="65.01.01", category=cat, severity=2, occurred_at=now_local()) for _ in range(8)]
    post(gw, eight)  # 8 × 0.5 = 4.0: not over the bound, no update
    assert decide(gw, eight[0]).status_code == 202
    updates = scores(vstack, lambda us: len(decided(us, "diverifikasi oleh")) >= 1, cat)
    assert [(u["weighted"], u["upper"], u["alarm"], u["level"]) for u in of(updates, "65.01")] == \
        [(4.5, 4.0, True, "waspada")]
