"""The scoring worker on the embedded stack: reports posted over HTTP, score updates read
from pantau.scores.v1. Each test owns its categories, so they share one stack."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import httpx
import orjson

from services.scoring.agents import ReportScorer, partition_of
from services.scoring.baseline import Scoring
from shared import topics
from shared.config import Config
from tests.scoring.conftest import of, post, scores
from tests.scoring.test_agents import Msg
from tests.utils import collect, report, value

WITA = timezone(timedelta(hours=8))  # Kalimantan Utara


def now_local() -> str:
    return datetime.now(WITA).isoformat(timespec="seconds")


def days_ago(n: int) -> str:
    """Noon, n local days before today."""
    midnight = datetime.now(WITA).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - timedelta(days=n) + timedelta(hours=12)).isoformat(timespec="seconds")


def test_a_surge_raises_its_kabupaten_and_leaves_the_neighbour_normal(scoring_stack, gateway):
    cat = "communal_clash"
    # Ten days of history, one report a day in Bulungan (65.01) and Malinau (65.02), sent late:
    # each goes into its own day of the baseline. 65.01 and 65.02 share a partition.
    history = [report(region_code=r, category=cat, verified=True, severity=2, occurred_at=days_ago(d))
               for d in range(10, 0, -1) for r in ("65.01", "65.02")]
    neighbour = [report(region_code="65.02", category=cat, verified=True, occurred_at=now_local())]
    surge = [report(region_code="65.01", category=cat, verified=True, occurred_at=now_local()) for _ in range(6)]
    # Processed after the neighbour's report, and written to the same scores.v1 partition as
    # any update for the neighbour: once it is seen, the neighbour has had its say.
    barrier = report(region_code="65.02", category="other", severity=4, occurred_at=now_local())
    post(gateway, history + neighbour + surge + [barrier])

    updates = scores(scoring_stack, lambda us: any(u["region_code"] == "65.02" for u in us)
                     and any(u["region_code"] == "65.01" and u["level"] == "siaga" for u in us), cat, "other")
    surged = [u for u in of(updates, "65.01") if u["category"] == cat][-1]
    assert (surged["level"], surged["alarm"], surged["method"], surged["observed"]) == ("siaga", True, "ears-c2", 6)
    assert surged["reasons"] == [
        "6 laporan hari ini vs perkiraan 1,0, batas atas 2,5 (EARS C2, baseline 7 hari)",
        "lebih dari 2× batas atas",
    ]
    assert sorted(surged["report_ids"]) == sorted(r["event_id"] for r in surge)
    assert surged["bucket_start"] == days_ago(0).replace("T12:", "T00:")
    assert [u for u in of(updates, "65.02") if u["category"] == cat] == []  # no update: still normal


def test_a_severity_5_report_is_awas_at_once(scoring_stack, gateway):
    r = report(region_code="65.04", category="security_threat", severity=5, occurred_at=now_local())
    post(gateway, [r])
    updates = scores(scoring_stack, lambda us: any(u["region_code"] == "65.04" for u in us), "security_threat")
    u = of(updates, "65.04")[0]
    assert (u["level"], u["observed"], u["weighted"]) == ("awas", 1, 0.5)  # unverified weighs half
    assert u["reasons"][0] == "laporan tingkat keparahan 5"
    assert u["report_ids"] == [r["event_id"]]
    assert set(u) == {"region_code", "category", "bucket_start", "bucket_end", "observed", "weighted", "expected",
                      "upper", "method", "alarm", "level", "reasons", "report_ids", "computed_at"}


def test_an_update_carries_the_received_at_of_the_report_that_raised_it(scoring_stack, gateway):
    """Notify measures report received → first page from this header (pantau_end_to_end_seconds)."""
    r = report(region_code="65.03", category="security_threat", severity=5, occurred_at=now_local())
    post(gateway, [r])
    boot = scoring_stack.config.kafka.bootstrap_servers
    [accepted] = asyncio.run(collect(boot, [topics.REPORTS_V1], lambda ms: len(ms) == 1,
                                     where=lambda m: value(m)["event_id"] == r["event_id"]))
    [update] = asyncio.run(collect(boot, [topics.SCORES_V1], lambda ms: len(ms) == 1,
                                   where=lambda m: value(m)["report_ids"] == [r["event_id"]]))
    assert dict(update.headers)[topics.RECEIVED_AT_HEADER].decode() == value(accepted)["received_at"]


def test_alarms_in_two_kabupaten_make_the_province_siaga(scoring_stack, gateway):
    cat = "hoax_disinformation"
    post(gateway, [report(region_code=r, category=cat, verified=True, occurred_at=now_local())
                   for _ in range(5) for r in ("65.03", "65.71")])
    updates = scores(scoring_stack, lambda us: any(u["region_code"] == "65" and u["level"] == "siaga" for u in us), cat)
    province = [u for u in of(updates, "65") if u["level"] == "siaga"][0]
    assert province["reasons"][0] == "alarm di 2 kabupaten/kota: Kabupaten Nunukan (65.03), Kota Tarakan (65.71)"
    assert province["observed"] == 10
    assert of(updates, "65.03")[-1]["level"] == of(updates, "65.71")[-1]["level"] == "waspada"


def test_web_endpoints(scoring_stack):
    base = f"http://127.0.0.1:{scoring_stack.config.scoring.web_port}"
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{base}/readyz").status_code == 200
    text = httpx.get(f"{base}/metrics").text
    assert 'pantau_score_updates_total{level="awas"}' in text
    assert 'pantau_region_level{category="security_threat",region="65.04"} 3.0' in text
    assert "pantau_scoring_last_batch_timestamp_seconds " in text


def test_a_bad_scoring_config_stops_the_worker_naming_the_key(tmp_path):
    cfg = tmp_path / "pantau.yaml"
    cfg.write_text("scoring:\n  hysterisis_buckets: 3\n")
    done = subprocess.run([sys.executable, "-m", "services.scoring"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PANTAU_CONFIG": str(cfg)})
    assert done.returncode == 2
    assert "scoring.hysterisis_buckets: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def uninterrupted(bodies: list[dict], config: Config) -> dict[str, str]:
    """Final level per kabupaten/kota when the same reports go through scoring in one run."""
    partitions = config.kafka.partitions
    scorer, last = ReportScorer({}, Scoring.from_settings(config.scoring), partitions), {}
    offsets: dict[int, int] = {}
    for b in bodies:
        p = partition_of(b["region_code"][:5], partitions)
        offsets[p] = offsets.get(p, -1) + 1
        box = scorer.handle([Msg(topics.REPORTS_V1, p, offsets[p], orjson.dumps(b))], time.time())
        scorer.table.update(box.writes)
        last.update({u.region_code: u.level for u in box.updates.values()})
    return last


def test_kill_9_mid_stream_loses_nothing_and_counts_nothing_twice(scoring_stack, gateway):
    cat = "election_dispute"
    # Nunukan's 1,200 keep the worker busy when it is killed; the others end on distinct levels.
    plan = {"65.01": 14, "65.02": 6, "65.04": 3, "65.71": 9, "65.03": 1200}
    bodies = {r: [report(region_code=r, category=cat, verified=True, occurred_at=now_local()) for _ in range(n)]
              for r, n in plan.items()}
    first = [b for r, n in plan.items() for b in bodies[r][: n // 2]]
    second = [b for r, n in plan.items() for b in bodies[r][n // 2:]]
    post(gateway, first)
    scores(scoring_stack, lambda us: len(us) > 0, cat)  # the worker is busy with them: now
    scoring_stack.kill("scoring")
    post(gateway, second)
    scoring_stack.start_service("scoring")

    # The levels the restarted worker reaches are those of a run that never stopped.
    expected = uninterrupted(first + second, scoring_stack.config)
    assert expected == {"65.01": "siaga", "65.02": "waspada", "65.71": "siaga", "65.03": "siaga"}  # 65.04: normal

    def last_levels(us: list[dict]) -> dict[str, str]:
        return {u["region_code"]: u["level"] for u in us if len(u["region_code"]) > 2}

    settled = scores(scoring_stack, lambda us: last_levels(us) == expected, cat, timeout_s=90)
    assert of(settled, "65.04") == []

    # One grave report each: its update carries the day's exact count, so nothing was lost
    # and nothing counted twice across the crash.
    post(gateway, [report(region_code=r, category=cat, verified=True, severity=5, occurred_at=now_local())
                   for r in plan])
    updates = scores(scoring_stack, lambda us: {u["region_code"] for u in us if u["level"] == "awas"} >= set(plan), cat)
    for region, n in plan.items():
        awas = [u for u in of(updates, region) if u["level"] == "awas"][0]
        assert (awas["observed"], awas["weighted"]) == (n + 1, n + 1.0), region
