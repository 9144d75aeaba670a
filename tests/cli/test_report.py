"""The situation report's pure parts: which day (the region's clock), the level each
kabupaten/kota reached, which incidents the day saw, and what the Markdown says."""

from __future__ import annotations

from datetime import date, datetime

from cli.report import day_window, peak_level, render_md, summarize, time_to_ack
from shared.regions import WIB, WITA

DAY = date(2024, 11, 27)  # Pilkada day


def at(hhmm: str, day: str = "2024-11-27") -> str:
    """A WITA wall-clock time, with its offset."""
    return f"{day}T{hhmm}:00+08:00"


def incident(region: str, category: str, level: str, opened: str, timeline: list[dict], **kw) -> dict:
    return {"id": f"{region}-{category}", "kind": "score", "region_code": region, "region_name": region,
            "category": category, "level": level, "reasons": [f"why {region}"], "opened_at": opened,
            "acknowledged_at": None, "resolved_at": None, "timeline": timeline, **kw}


def test_the_day_is_the_regions_own():
    start, end, tz = day_window(DAY, "65")
    assert tz is WITA and end - start == 86400
    assert datetime.fromtimestamp(start, WITA).isoformat() == "2024-11-27T00:00:00+08:00"
    assert day_window(DAY, None)[2] is WIB


def test_peak_level_counts_the_level_in_force_at_the_start_and_rises_before_the_end():
    start, end, _ = day_window(DAY, "65")
    inc = incident("65.01", "other", "awas", at("22:00", "2024-11-26"), [
        {"at": at("22:00", "2024-11-26"), "kind": "opened", "level": "waspada"},
        {"at": at("09:00"), "kind": "level", "level": "siaga"},
        {"at": at("01:00", "2024-11-28"), "kind": "level", "level": "awas"},  # the next day
    ])
    assert peak_level(inc, start, end) == "siaga"
    inc["timeline"] = inc["timeline"][:1]
    assert peak_level(inc, start, end) == "waspada"


def test_summary_rows_incidents_and_time_to_acknowledge():
    open_ = incident("65.01.02", "communal_clash", "awas", at("08:00"),
                     [{"at": at("08:00"), "kind": "opened", "level": "awas"}],
                     acknowledged_at=at("08:12"), acknowledged_by="operator:op1")
    old = incident("65.71", "election_dispute", "siaga", at("08:00", "2024-11-20"),
                   [{"at": at("08:00", "2024-11-20"), "kind": "opened", "level": "siaga"}],
                   resolved_at=at("10:00", "2024-11-21"), status="resolved")
    rep = summarize([open_, old], "65", DAY)
    rows = {code: peaks for code, _, peaks in rep.rows}
    assert list(rows) == ["65.01", "65.02", "65.03", "65.04", "65.71"]
    assert rows["65.01"] == {"communal_clash": "awas"} and rows["65.71"] == {}  # resolved days before
    assert [i["id"] for i in rep.opened] == [open_["id"]] and [i["id"] for i in rep.acknowledged] == [open_["id"]]
    assert rep.resolved == [] and rep.active == 1
    assert time_to_ack(open_) == "12 menit" and time_to_ack(open_, "en") == "12 min"

    md = render_md(rep, None, "27 Nov 2024", "id")
    assert "| Kabupaten Bulungan | AWAS | AWAS |" in md and "| Kota Tarakan | NORMAL | NORMAL |" in md
    assert "waktu hingga konfirmasi 12 menit, oleh operator:op1" in md and "why 65.01.02" in md
