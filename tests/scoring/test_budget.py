"""`pantau evaluate --config FILE --history FILE`: the statistical pages the live method would
have sent over a region's own history, for the cells the config's policies route."""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from services.scoring.backfill import aggregate
from services.scoring.baseline import Scoring
from services.scoring.budget import pages
from services.scoring.evaluate import poisson
from shared.scoring_config import ScoringSettings

WITA = timezone(timedelta(hours=8))
START = datetime(2026, 1, 1, 12, tzinfo=WITA)
CONFIG = """contacts:
  - {id: kab-bulungan, name: Koordinator Bulungan, webhook: "http://127.0.0.1:9/kab"}
policies:
  - id: bulungan
    match: {region: "65.01", min_level: waspada}
    steps:
      - {notify: ["contact:kab-bulungan"], wait_minutes: 5}
"""


def _reports(region: str, category: str, daily: list[int]) -> list[dict]:
    return [{"event_id": f"{region}-{category}-{d}-{k}", "source": "fkdm-kaltara", "region_code": region,
             "category": category, "severity": 2, "verified": True, "title": "laporan",
             "occurred_at": (START + timedelta(days=d, minutes=k)).isoformat()}
            for d, n in enumerate(daily) for k in range(n)]


def _history() -> list[dict]:
    rng = random.Random(7)
    quiet = [poisson(rng, 0.3) for _ in range(180)]
    quiet[0] = quiet[-1] = 1  # the file spans exactly 180 days
    # Bulungan: the same quiet days, with two surges of four days each, far apart.
    surged = list(quiet)
    for start in (80, 150):
        for d in range(4):
            surged[start + d] += 4
    return (_reports("65.01", "mass_mobilization", surged) + _reports("65.02", "mass_mobilization", surged)
            + _reports("65.03", "other", quiet))


def test_each_surge_opens_one_page_and_quiet_days_none() -> None:
    sc = Scoring.from_settings(ScoringSettings())
    budget = pages(aggregate(_history(), sc), sc, lambda region, category: region == "65.01")
    by_cell = {c.cell: c for c in budget.cells}
    assert budget.buckets == 180
    assert by_cell[("65.01", "mass_mobilization")].pages == 2        # two surges, two incidents
    assert by_cell[("65.01", "mass_mobilization")].alarms >= 2
    assert by_cell[("65.03", "other")].pages == 0
    # Only Bulungan is routed: 2 pages in 180 days.
    assert budget.pages_per_month == 2 / (180 / (365.25 / 12))


def test_pantau_evaluate_with_history_prints_the_budget(tmp_path: Path) -> None:
    cfg, hist = tmp_path / "pantau.yaml", tmp_path / "history.jsonl"
    cfg.write_text(CONFIG)
    hist.write_bytes(b"\n".join(orjson.dumps(r) for r in _history()) + b"\n")
    r = subprocess.run([sys.executable, "-m", "cli.main", "evaluate", "--config", str(cfg), "--history", str(hist)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "0.3 statistical pages a month from cells a policy routes" in r.stdout
    assert "65.01 Kabupaten Bulungan" in r.stdout and "65.02 Kabupaten Malinau" in r.stdout
