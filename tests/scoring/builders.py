"""Test-data builders for the scoring core: clocks in local time, reports, seeded cells."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from services.scoring.baseline import Cell, Scoring, add_report, new_cell, roll
from shared.scoring_config import ScoringSettings

WIB = timezone(timedelta(hours=7))
WITA = timezone(timedelta(hours=8))
# Pilkada serentak, 27 November 2024.
DAY = datetime(2024, 11, 27, tzinfo=WITA)

_ids = itertools.count()


def at(days: float = 0, hour: int = 10, minute: int = 0, tz: timezone = WITA) -> float:
    """Epoch seconds `days` after 27 Nov 2024 at hour:minute in the given zone."""
    return (datetime(2024, 11, 27, tzinfo=tz) + timedelta(days=days, hours=hour, minutes=minute)).timestamp()


def report(ts: float, tz: timezone = WITA, **overrides: Any) -> dict[str, Any]:
    """A report as it appears on pantau.reports.v1 (the fields scoring reads, and a few more)."""
    body = {
        "event_id": f"ev-{next(_ids)}",
        "source": "fkdm-kaltara",
        "region_code": "65.71.02",
        "category": "mass_mobilization",
        "severity": 2,
        "occurred_at": datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds"),
        "title": "Unjuk rasa",
        "verified": True,
        "casualties": 0,
    }
    body.update(overrides)
    return body


def scoring(**settings: Any) -> Scoring:
    """Scoring with these settings; EARS C2 unless a method is named, as the cell, ring and
    backfill tests count in its 35-bucket ring (tests/scoring/test_default.py covers the default)."""
    settings.setdefault("method", "ears-c2")
    return Scoring.from_settings(ScoringSettings(**settings))


def seeded(sc: Scoring, daily: list[int], region: str = "65.71", category: str = "mass_mobilization",
           today: float | None = None) -> Cell:
    """A cell whose closed days before `today` had these verified counts (oldest first), as if
    it had watched them live, and whose running day is `today` with nothing yet."""
    today = at(0) if today is None else today
    n = len(daily)
    cell = new_cell(region, category, today - n * 86400, sc)
    for i, count in enumerate(daily):
        t = today - (n - i) * 86400
        for _ in range(count):
            cell, _, _ = add_report(cell, report(t, region_code=region, category=category), None, t, sc)
    cell, _ = roll(cell, today, sc)
    return cell
