"""The live default (GLR on a 28-day reference) on the embedded stack, as issue 13 asks: a 3-day
ramp on one cell raises it; 60 days of stationary sparse history on 45 cells (backfilled) and a
quiet live day raise no more alarms than the simulations predict."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.stack import EmbeddedStack
from services.scoring.baseline import Scoring
from services.scoring.evaluate import poisson
from services.scoring.methods import upper_bound
from shared.scoring_config import ScoringSettings
from tests.scoring.conftest import of, post, scores, scoring_config, started
from tests.scoring.test_backfill_stack import backfill, cells, write_jsonl
from tests.scoring.test_service import days_ago, now_local
from tests.utils import report

KABKOTA = ("65.01", "65.02", "65.03", "65.04", "65.71")
CATEGORIES = ("election_dispute", "mass_mobilization", "sara_incitement", "hoax_disinformation", "communal_clash",
              "land_resource_conflict", "political_violence", "security_threat", "other")
DAYS = 60


@pytest.fixture(scope="module")
def scoring_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """The scoring stack of tests/scoring/conftest.py with the built-in scoring defaults."""
    tmp = tmp_path_factory.mktemp("default")
    with started(scoring_config(tmp / "pantau.yaml", method=None), tmp) as stack:
        yield stack


def _history(region: str, category: str, daily: list[int]) -> list[dict]:
    n = len(daily)
    return [report(event_id=f"h-{region}-{category}-{d}-{k}", region_code=f"{region}.01", category=category,
                   verified=True, severity=2, occurred_at=days_ago(n - d).replace("T12:00", f"T12:{k:02d}"))
            for d, count in enumerate(daily) for k in range(count)]


def _today(region: str, category: str, count: int, tag: str) -> list[dict]:
    return [report(event_id=f"t-{tag}-{region}-{category}-{k}", region_code=f"{region}.01", category=category,
                   verified=True, severity=2, occurred_at=now_local()) for k in range(count)]


def _live_alarm(daily: list[int], today: int) -> bool:
    sc = Scoring.from_settings(ScoringSettings())
    history = [float(c) for c in daily][-sc.history:]
    return upper_bound(sc.settings.method, history, current=today, **sc.params).alarm


def test_a_3_day_ramp_raises_its_cell(scoring_stack, gateway, tmp_path: Path) -> None:
    stack = scoring_stack
    # One report every fifth day (0.2 a day) for 58 days, then the ramp of +max(2, 2×0.2)
    # a day shaped 0.5, 1, 1.5: 1 and 2 reports, each below the alarm line on its own, and 3
    # on the third day (today, live).
    quiet = [1 if d % 5 == 0 else 0 for d in range(DAYS - 2)]
    ramp = quiet + [1, 2]
    assert not _live_alarm(quiet + [1], 2) and not _live_alarm(quiet, 1)  # no alarm on days 1 and 2
    assert _live_alarm(ramp, 3)
    f = tmp_path / "ramp.jsonl"
    write_jsonl(f, _history("65.03", "mass_mobilization", ramp))
    assert backfill(stack, f)[0].returncode == 1  # write_jsonl adds one bad row, said and skipped
    key = b"65.03|mass_mobilization"
    cells(stack, lambda cs: key in cs and cs[key]["backfilled"] >= 0)

    post(gateway, _today("65.03", "mass_mobilization", 3, "ramp"))
    (update,) = of(scores(stack, lambda us: bool(of(us, "65.03")), "mass_mobilization"), "65.03")
    assert (update["alarm"], update["level"], update["method"], update["observed"]) == (True, "waspada", "glr", 3)
    assert "tanpa kejadian nyata" in update["reasons"][0] and "(GLR, baseline 28 hari)" in update["reasons"][0]


def test_sixty_quiet_days_on_45_cells_and_a_quiet_day_raise_what_the_simulations_predict(
        scoring_stack, gateway, tmp_path: Path) -> None:
    stack = scoring_stack
    rng = random.Random(1302)
    plan = {}
    for region in KABKOTA:
        for category in CATEGORIES:
            if (region, category) == ("65.03", "mass_mobilization"):
                continue  # the ramp's cell
            rate = rng.choice((0.2, 0.5, 1.0))
            plan[(region, category)] = ([poisson(rng, rate) for _ in range(DAYS)], poisson(rng, rate))
    assert len(plan) == 44
    predicted = sum(_live_alarm(daily, today) for daily, today in plan.values())
    # The harness's table: under 0.2 false alarms per cell-year on Poisson counts at these rates,
    # i.e. about 0.02 expected on 45 cells in one day.
    assert predicted == 0

    f = tmp_path / "quiet.jsonl"
    write_jsonl(f, [r for (region, category), (daily, _) in plan.items() for r in _history(region, category, daily)])
    assert backfill(stack, f)[0].returncode == 1
    keys = [f"{r}|{c}".encode() for r, c in plan]
    cells(stack, lambda cs: all(k in cs and cs[k]["backfilled"] >= 0 for k in keys), timeout_s=120)

    live = [r for (region, category), (_, today) in plan.items() for r in _today(region, category, today, "quiet")]
    post(gateway, live)
    expected = {f"{r}|{c}".encode(): today for (r, c), (_, today) in plan.items() if today}
    cells(stack, lambda cs: all(cs.get(k, {}).get("observed") == n for k, n in expected.items()), timeout_s=120)
    # A severity-5 report after them all marks the end of what the worker has written.
    post(gateway, [report(region_code="65.71", category="other", severity=5, occurred_at=now_local())])
    updates = scores(stack, lambda us: any(u["region_code"] == "65.71" and u["level"] == "awas" for u in us),
                     *CATEGORIES)
    # The ramp's cell and its province (whose sum holds the ramp) alarmed in the other test.
    alarms = [u for u in updates if u["alarm"] and (u["region_code"], u["category"]) not in
              (("65.03", "mass_mobilization"), ("65", "mass_mobilization"))]
    assert len(alarms) <= predicted, alarms
