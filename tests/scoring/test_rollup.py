"""Province cells: members summed bucket by bucket, the two-alarm rule, replay-safe snapshots."""

from __future__ import annotations

from services.scoring.baseline import add_report, new_cell
from services.scoring.rollup import ProvinceCell, apply_member, new_province, roll_province, snapshot, summed
from tests.scoring.builders import at, report, scoring

CATEGORY = "hoax_disinformation"


def member(sc, region, n, ts=None, **kw):
    """A kabupaten/kota cell with n reports in the running day, and its snapshot."""
    ts = at(0) if ts is None else ts
    cell = new_cell(region, CATEGORY, ts, sc)
    for i in range(n):
        cell, _, _ = add_report(cell, report(ts, region_code=region, category=CATEGORY, **kw), i, ts, sc)
    return cell, snapshot(cell)


def test_two_kabkota_alarms_make_the_province_siaga():
    sc = scoring()
    p = new_province("65", CATEGORY, at(0), sc)
    bulungan, snap1 = member(sc, "65.01", 5)      # cold start: 5 > Poisson(0.5) upper 4
    tarakan, snap2 = member(sc, "65.71", 5)
    assert bulungan.alarm and tarakan.alarm
    p, first = apply_member(p, snap1, at(0), sc)
    assert first is None or first.level != "siaga"
    p, update = apply_member(p, snap2, at(0), sc)
    assert (update.region_code, update.level, update.observed) == ("65", "siaga", 10)
    assert update.reasons[0] == "alarm di 2 kabupaten/kota: Kabupaten Bulungan (65.01), Kota Tarakan (65.71)"
    assert update.method == "poisson:default_rate" and update.expected == 2.5  # 0.5/day × 5 kabupaten/kota
    assert ProvinceCell.from_bytes(p.to_bytes()) == p


def test_an_older_snapshot_is_ignored():
    sc = scoring()
    p = new_province("65", CATEGORY, at(0), sc)
    cell, old = member(sc, "65.71", 2)
    cell, _, _ = add_report(cell, report(at(0), region_code="65.71", category=CATEGORY), 10, at(0), sc)
    p, _ = apply_member(p, snapshot(cell), at(0), sc)
    p, update = apply_member(p, old, at(0), sc)  # a replay of an earlier version
    assert update is None and p.members["65.71"]["observed"] == 3


def test_only_province_level_reports_carry_severity_to_the_province():
    sc = scoring()
    p = new_province("65", CATEGORY, at(0), sc)
    _, kab = member(sc, "65.71", 1, severity=5)
    p, update = apply_member(p, kab, at(0), sc)
    assert update is None  # Tarakan is awas; the province is not, by that alone
    _, direct = member(sc, "65", 1, severity=5)
    p, update = apply_member(p, direct, at(0), sc)
    assert update.level == "awas" and update.reasons[0] == "laporan tingkat keparahan 5"


def test_members_are_aligned_on_the_province_day():
    sc = scoring()
    p = new_province("65", CATEGORY, at(0), sc)
    _, yesterday = member(sc, "65.01", 3, ts=at(-1))   # a member that has not rolled since yesterday
    _, today = member(sc, "65.71", 2)
    p, _ = apply_member(p, yesterday, at(0), sc)
    p, _ = apply_member(p, today, at(0), sc)
    s = summed(p, sc)
    assert (s.bucket.observed, s.history[-1]) == (2, 3.0)


def test_the_province_level_falls_after_quiet_days():
    sc = scoring()
    p = new_province("65", CATEGORY, at(0), sc)
    for region in ("65.01", "65.71"):
        p, _ = apply_member(p, member(sc, region, 5)[1], at(0), sc)
    assert p.hold.level == "siaga"
    p, held = roll_province(p, at(1), sc)
    assert held.level == "siaga" and not held.alarm
    p, _ = roll_province(p, at(2), sc)
    p, fell = roll_province(p, at(3), sc)
    assert fell.level == "normal"
