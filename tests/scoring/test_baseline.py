"""The baseline cell, without Kafka: buckets in local time, zeros for empty days, late and
repeated reports, hysteresis, cold start, and the score update it emits."""

from __future__ import annotations

import orjson
import pytest

from services.scoring.baseline import (
    COUNTED, DUPLICATE, LATE, RECENT_IDS, REDELIVERED, TOO_OLD, Cell, add_report, assess, bucket_start, new_cell,
    report_key, roll,
)
from tests.scoring.builders import WIB, at, report, scoring, seeded

CONTRACT_FIELDS = ["region_code", "category", "bucket_start", "bucket_end", "observed", "weighted", "expected",
                   "upper", "method", "alarm", "level", "reasons", "report_ids", "computed_at"]


def surge(cell, sc, n, ts=None, **kw):
    """n reports in the running bucket; returns the cell and every update emitted."""
    ts = at(0) if ts is None else ts
    updates = []
    for _ in range(n):
        cell, u, _ = add_report(cell, report(ts, region_code=cell.region, category=cell.category, **kw), None, ts, sc)
        if u:
            updates.append(u)
    return cell, updates


def test_surge_raises_an_alarm_that_explains_itself():
    sc = scoring()
    cell = seeded(sc, [1, 2, 1, 2, 1, 2, 1, 2, 1, 2])
    cell, updates = surge(cell, sc, 7)
    first = updates[0]
    # C2 reference: the 7 days before the 2-day guard band = 2,1,2,1,2,1,2 → mean 11/7.
    assert first.expected == pytest.approx(11 / 7, abs=1e-4)
    assert (first.level, first.alarm, first.method) == ("waspada", True, "ears-c2")
    assert first.observed == 4 and first.observed > first.upper
    assert first.reasons == ["4 laporan hari ini vs perkiraan 1,6, batas atas 3,2 (EARS C2, baseline 7 hari)"]
    last = updates[-1]
    assert (last.level, last.observed) == ("siaga", 7)
    assert last.reasons[1] == "lebih dari 2× batas atas"
    assert list(orjson.loads(last.to_json())) == CONTRACT_FIELDS
    assert last.bucket_start == "2024-11-27T00:00:00+08:00" and last.bucket_end == "2024-11-28T00:00:00+08:00"
    assert len(last.report_ids) == 7


def test_no_update_while_the_state_stays_the_same():
    sc = scoring()
    cell = seeded(sc, [1] * 10)
    cell, updates = surge(cell, sc, 2)
    assert updates == []  # 2 reports against a flat 1/day with min_sigma 0.5: upper 2.55


def test_flat_history_uses_min_sigma():
    flat = [1] * 10
    with_floor = scoring(min_sigma=0.5)
    cell, updates = surge(seeded(with_floor, flat), with_floor, 2)
    assert updates == []
    cell, updates = surge(cell, with_floor, 1)
    assert updates[0].upper == pytest.approx(1 + 3.090232 * 0.5, abs=1e-4) and updates[0].alarm
    # Without the floor a flat history has sd = 0, and any rise at all is an alarm.
    no_floor = scoring(min_sigma=0)
    cell, updates = surge(seeded(no_floor, flat), no_floor, 2)
    assert updates[0].upper == pytest.approx(1.0) and updates[0].level == "waspada"


def test_empty_days_count_as_zero():
    sc = scoring(method="ears-c1")
    # Two reports a day for 9 days, then 3 quiet days nobody wrote down, then one report.
    cell = seeded(sc, [2] * 9, today=at(-3))
    cell, update, outcome = add_report(cell, report(at(0)), None, at(0), sc)
    assert outcome == COUNTED and cell.history[-3:] == [0.0, 0.0, 0.0]
    assert update is None
    est = assess(cell, sc)[2]
    # C1 reference: the last 7 days, 2,2,2,2,0,0,0 → mean 8/7, not 2.
    assert est.expected == pytest.approx(8 / 7)


def test_local_day_boundary_in_wita():
    sc = scoring()
    late_evening = at(0, 23, 30)      # 27 Nov 23:30 WITA = 15:30 UTC
    after_midnight = at(1, 0, 30)     # 28 Nov 00:30 WITA = 16:30 UTC, the same UTC day
    assert bucket_start(late_evening, "65.71", 86400) != bucket_start(after_midnight, "65.71", 86400)
    cell = new_cell("65.71", "mass_mobilization", late_evening, sc)
    cell, _, _ = add_report(cell, report(late_evening), None, late_evening, sc)
    cell, _, _ = add_report(cell, report(after_midnight), None, after_midnight, sc)
    assert (cell.observed, cell.history[-1]) == (1, 1.0)
    # In Bandung (WIB) 23:30 WITA is 22:30 the same day, and 00:30 WITA is still 27 Nov.
    assert bucket_start(late_evening, "32.73", 86400) == bucket_start(after_midnight, "32.73", 86400)
    assert bucket_start(at(0, 0, 0, tz=WIB), "32.73", 86400) == at(0, 0, 0, tz=WIB)


def test_hourly_buckets():
    sc = scoring(bucket="hour")
    cell = new_cell("65.71", "mass_mobilization", at(0, 10, 5), sc)
    cell, _, _ = add_report(cell, report(at(0, 10, 59)), None, at(0, 10, 59), sc)
    cell, _, _ = add_report(cell, report(at(0, 11, 1)), None, at(0, 11, 1), sc)
    assert (cell.observed, cell.history[-1], cell.bucket) == (1, 1.0, at(0, 11))


def test_hysteresis_a_flapping_count_rises_once():
    sc = scoring()
    cell = seeded(sc, [1] * 10)
    cell, day0 = surge(cell, sc, 4)
    assert [u.level for u in day0] == ["waspada"]
    cell, quiet = roll(cell, at(1), sc)                 # day 1: nothing
    assert (quiet.level, quiet.alarm) == ("waspada", False)
    assert quiet.reasons[0] == "level waspada dipertahankan: 0 dari 2 hari tenang"
    cell, day2 = surge(cell, sc, 4, ts=at(2))          # day 2: the surge again
    assert all(u.level == "waspada" for u in day2)     # held all along: no second rise
    cell, _ = roll(cell, at(3), sc)
    cell, still = roll(cell, at(4), sc)
    assert still is None and cell.hold.level == "waspada"  # one quiet day so far
    cell, fell = roll(cell, at(5), sc)
    assert fell.level == "normal"
    assert fell.reasons[0] == "turun dari waspada setelah 2 hari tenang"


def test_redelivered_offset_is_not_counted():
    sc = scoring()
    cell = new_cell("65.71", "mass_mobilization", at(0), sc)
    r = report(at(0))
    cell, _, first = add_report(cell, r, 41, at(0), sc)
    cell, _, again = add_report(cell, dict(r), 41, at(0), sc)
    cell, _, older = add_report(cell, report(at(0)), 7, at(0), sc)
    assert (first, again, older) == (COUNTED, REDELIVERED, REDELIVERED)
    assert cell.observed == 1 and cell.offset == 41


def test_repeated_report_id_is_not_counted():
    sc = scoring()
    cell = new_cell("65.71", "mass_mobilization", at(0), sc)
    r = report(at(0))
    cell, _, first = add_report(cell, r, 1, at(0), sc)
    cell, _, repeat = add_report(cell, dict(r, ingest_id="another"), 2, at(0), sc)
    other_source = dict(r, source="bawaslu-kaltara")
    cell, _, third = add_report(cell, other_source, 3, at(0), sc)
    assert (first, repeat, third) == (COUNTED, DUPLICATE, COUNTED)
    assert cell.observed == 2


def test_the_last_256_report_ids_are_remembered_across_encoding():
    sc = scoring()
    cell = new_cell("65.71", "mass_mobilization", at(0), sc)
    reports = [report(at(0)) for _ in range(RECENT_IDS + 1)]
    for r in reports:
        cell, _, _ = add_report(cell, r, None, at(0), sc)
    cell = Cell.from_bytes(cell.to_bytes())
    assert add_report(cell, reports[-1], None, at(0), sc)[2] == DUPLICATE
    assert add_report(cell, reports[0], None, at(0), sc)[2] == COUNTED  # the oldest was let go


def test_a_report_id_straddling_two_stored_ids_is_not_a_repeat():
    sc = scoring()
    cell = new_cell("65.71", "mass_mobilization", at(0), sc)
    r = report(at(0))
    ident = report_key(r["source"], r["event_id"])
    cell.recent = b"\0\0\0" + ident + b"\0\0\0"  # the id's bytes, but not at an id's place
    assert add_report(cell, r, None, at(0), sc)[2] == COUNTED


def test_severity_5_is_awas_at_once():
    sc = scoring()
    cell = new_cell("65.02", "communal_clash", at(0), sc)
    r = report(at(0), region_code="65.02.01", category="communal_clash", severity=5, verified=False)
    cell, update, _ = add_report(cell, r, None, at(0), sc)
    assert (update.level, update.region_code) == ("awas", "65.02")
    assert update.reasons[0] == "laporan tingkat keparahan 5"
    assert update.report_ids == [r["event_id"]]
    assert update.weighted == 0.5  # unverified


def test_casualties_are_awas_and_severity_4_siaga():
    sc = scoring()
    cell = new_cell("65.02", "communal_clash", at(0), sc)
    cell, update, _ = add_report(cell, report(at(0), category="communal_clash", severity=4), None, at(0), sc)
    assert update.level == "siaga"
    cell, update, _ = add_report(cell, report(at(0), category="communal_clash", casualties=2), None, at(0), sc)
    assert update.level == "awas" and update.reasons[0] == "laporan dengan korban jiwa/luka (2 orang)"


def test_late_reports_fill_history_and_very_old_ones_are_refused():
    sc = scoring()
    cell = new_cell("65.71", "mass_mobilization", at(0), sc)
    cell, update, outcome = add_report(cell, report(at(-5)), None, at(0), sc)
    assert (outcome, update, cell.history[-5], cell.observed) == (LATE, None, 1.0, 0)
    assert cell.since == bucket_start(at(-5), "65.71", 86400)
    cell, _, outcome = add_report(cell, report(at(-36)), None, at(0), sc)
    assert outcome == TOO_OLD and sum(cell.history) == 1.0


def test_backfilled_history_replaces_the_prior():
    sc = scoring()
    cell = new_cell("65.71", "mass_mobilization", at(0), sc)
    for day in range(1, 11):
        cell, _, _ = add_report(cell, report(at(-day)), None, at(0), sc)
    cell, updates = surge(cell, sc, 4)
    assert updates[0].method == "ears-c2" and updates[0].level == "waspada"


def test_a_late_grave_report_from_yesterday_still_counts_for_the_level():
    sc = scoring()
    cell = new_cell("65.71", "mass_mobilization", at(0), sc)
    cell, update, outcome = add_report(cell, report(at(-1), severity=5), None, at(0), sc)
    assert (outcome, update.level) == (LATE, "awas")
    cell, update, _ = add_report(cell, report(at(-10), severity=5), None, at(0), sc)
    assert update is None  # ten days old: only the baseline learns of it


def test_cold_start_names_its_prior(tmp_path):
    sc = scoring()
    cell, updates = surge(new_cell("65.71", "mass_mobilization", at(0), sc), sc, 5)
    u = updates[0]
    assert (u.method, u.expected, u.upper, u.level) == ("poisson:default_rate", 0.5, 4.0, "waspada")
    assert u.reasons == ["5 laporan hari ini vs perkiraan 0,5, batas atas 4,0 "
                         "(riwayat belum cukup: laju bawaan 0,5/hari, Poisson)"]

    peta = tmp_path / "peta.csv"
    peta.write_text("region_code,category,daily_rate\n65.71,*,2\n65,mass_mobilization,10\n")
    sc = scoring(vulnerability_map=str(peta), language="en")
    cell, updates = surge(new_cell("65.71", "mass_mobilization", at(0), sc), sc, 9)  # Poisson(2) upper: 8
    assert updates[0].method == "poisson:vulnerability_map" and updates[0].expected == 2.0
    assert "(not enough history: vulnerability map 2.0/day, Poisson)" in updates[0].reasons[0]
    cell, updates = surge(new_cell("65.01", "mass_mobilization", at(0), sc), sc, 9)
    assert updates[0].method == "poisson:province_rate" and updates[0].expected == 2.0  # 10 / 5 kabupaten/kota


def test_cell_round_trips_through_json():
    sc = scoring()
    cell, _ = surge(seeded(sc, [1, 2, 0, 3]), sc, 3)
    raw = cell.to_bytes()
    assert Cell.from_bytes(raw) == cell
    assert len(raw) < 6000  # compact: one changelog write per touched cell per batch


def test_unverified_reports_weigh_less():
    sc = scoring(unverified_weight=0.25)
    cell = new_cell("65.71", "mass_mobilization", at(0), sc)
    cell, _ = surge(cell, sc, 3, verified=False)
    cell, _ = surge(cell, sc, 1, verified=True)
    assert (cell.observed, cell.weighted) == (4, 1.75)


@pytest.mark.parametrize("method", ["ears-c1", "ears-c2", "ears-c3", "cusum", "ewma"])
def test_every_method_scores_a_live_cell(method):
    sc = scoring(method=method)
    cell = seeded(sc, [1, 2, 1, 1, 2, 1, 2, 1, 1, 2] * 4)
    updates = []
    for day in range(3):  # EARS C3 alarms only once the two days before it were high too
        cell, _ = roll(cell, at(day), sc)
        cell, more = surge(cell, sc, 12, ts=at(day))
        updates += more
    alarms = [u for u in updates if u.alarm]
    assert alarms and {u.method for u in alarms} == {method}
    assert alarms[0].level in ("waspada", "siaga")


def test_a_cell_kept_under_ears_scores_after_the_method_changes_to_glr() -> None:
    from services.scoring.baseline import Cell, add_report, fit_cell, fit_history, known_history

    old_sc, new_sc = scoring(method="ears-c2"), scoring(method="glr")
    assert (old_sc.history, new_sc.history) == (35, 44)
    old = seeded(old_sc, [1, 0] * 20)  # 40 days watched; the 35-bucket ring kept the last 35
    cell = fit_cell(Cell.from_bytes(old.to_bytes()), new_sc)  # what the worker does on load
    assert cell.history == [0.0] * 9 + old.history
    # The 5 days the old ring dropped are unknown, not zeros: 35 known buckets, not 40.
    assert known_history(cell.bucket, cell.since, new_sc) == 35
    cell, update, outcome = add_report(cell, report(at(0)), None, at(0, 12), new_sc)
    assert outcome == "counted" and update is None  # one report on a usual day: no alarm
    assert fit_history([1.0, 2.0, 3.0], 2) == [2.0, 3.0]
