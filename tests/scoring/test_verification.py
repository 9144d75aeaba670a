"""Operators' decisions applied by the report scorer, with a dict for the table: verify moves
a report from half to full weight, reject removes it, a repeat changes nothing, a decision
that overtakes its report waits for it, and everything survives the cell's round trip."""

from __future__ import annotations

import orjson

from services.scoring.agents import ReportScorer, partition_of
from services.scoring.baseline import Cell
from services.scoring.levels import Hysteresis, close_bucket, rise, withdraw
from shared import topics
from tests.scoring.builders import at, report, scoring, seeded
from tests.scoring.test_agents import PARTITIONS, Feed, Msg, applied

KEY = b"65.71|mass_mobilization"


class Decisions:
    """Decisions as pantau.verifications.v1 carries them, offsets per partition."""

    def __init__(self):
        self.next: dict[int, int] = {}

    def __call__(self, r: dict, decision: str = "verified", by_name: str = "Budi Santoso") -> Msg:
        p = partition_of(r["region_code"][:5], PARTITIONS)
        off = self.next.get(p, 0)
        self.next[p] = off + 1
        body = {k: r[k] for k in ("source", "event_id", "region_code", "category", "occurred_at")}
        body.update(version=1, decision=decision, verified=r.get("verified", False), by="operator:budi",
                    by_name=by_name, decided_at="2024-11-27T10:00:00+08:00")
        return Msg(topics.VERIFICATIONS_V1, p, off, orjson.dumps(body))


def run(scorer: ReportScorer, table: dict, msgs: list[Msg], now: float):
    box = scorer.handle(msgs, now)
    applied(table, box)
    return box


def test_verify_moves_a_report_from_half_to_full_weight_and_a_repeat_changes_nothing():
    table: dict[bytes, bytes] = {}
    scorer, feed, decide = ReportScorer(table, scoring(), PARTITIONS), Feed(), Decisions()
    r = report(at(0), verified=False, severity=5)
    box = run(scorer, table, [feed(r)], at(0))
    assert box.updates["65.71|mass_mobilization"].weighted == 0.5

    box = run(scorer, table, [decide(r)], at(0, minute=5))
    u = box.updates["65.71|mass_mobilization"]
    assert (u.observed, u.weighted, u.level) == (1, 1.0, "awas")
    assert u.reasons[-1] == f"laporan {r['event_id']} diverifikasi oleh Budi Santoso"

    # The same decision again (a second click, a redelivery under a new offset): nothing moves.
    box = run(scorer, table, [decide(r)], at(0, minute=6))
    assert box.updates == {} and box.writes == {}
    assert Cell.from_bytes(table[KEY]).weighted == 1.0


def test_verifying_one_report_crosses_the_upper_bound():
    sc = scoring()
    table: dict[bytes, bytes] = {KEY: seeded(sc, [1] * 10).to_bytes()}  # upper bound 2.55 a day
    scorer, feed, decide = ReportScorer(table, sc, PARTITIONS), Feed(), Decisions()
    five = [report(at(0), verified=False) for _ in range(5)]
    box = run(scorer, table, [feed(r) for r in five], at(0))
    assert box.updates == {}  # 5 × 0.5 = 2.5: under the bound, normal
    box = run(scorer, table, [decide(five[0])], at(0, minute=1))
    u = box.updates["65.71|mass_mobilization"]
    assert (u.weighted, u.alarm, u.level) == (3.0, True, "waspada")


def test_reject_removes_the_report_and_its_severity():
    table: dict[bytes, bytes] = {}
    scorer, feed, decide = ReportScorer(table, scoring(), PARTITIONS), Feed(), Decisions()
    calm, grave = report(at(0), verified=False, severity=2), report(at(0), verified=True, severity=4)
    run(scorer, table, [feed(calm), feed(grave)], at(0))
    box = run(scorer, table, [decide(grave, "rejected", "Sari")], at(0, minute=1))
    u = box.updates["65.71|mass_mobilization"]
    assert (u.observed, u.weighted, u.report_ids) == (1, 0.5, [calm["event_id"]])
    assert u.reasons[-1] == f"laporan {grave['event_id']} ditolak oleh Sari"
    # The siaga only the grave report called for falls at once, not after the quiet days.
    assert u.level == "normal" and u.reasons[0] == "turun dari siaga: laporan yang menaikkannya ditolak"
    assert Cell.from_bytes(table[KEY]).severity == 2
    assert run(scorer, table, [decide(grave, "rejected", "Sari")], at(0, minute=2)).updates == {}
    # Changing one's mind: verified after all, the report counts in full again.
    u = run(scorer, table, [decide(grave)], at(0, minute=3)).updates["65.71|mass_mobilization"]
    assert (u.observed, u.weighted) == (2, 1.5)


def test_a_decision_that_overtakes_its_report_is_applied_when_the_report_arrives():
    table: dict[bytes, bytes] = {}
    scorer, feed, decide = ReportScorer(table, scoring(), PARTITIONS), Feed(), Decisions()
    r = report(at(0), verified=False, severity=5)
    assert run(scorer, table, [decide(r)], at(0)).updates == {}
    u = run(scorer, table, [feed(r)], at(0, minute=1)).updates["65.71|mass_mobilization"]
    assert (u.observed, u.weighted) == (1, 1.0)
    assert u.reasons[-1].endswith("diverifikasi oleh Budi Santoso")


def test_a_decision_on_a_closed_day_corrects_that_day_of_the_baseline():
    table: dict[bytes, bytes] = {}
    scorer, feed, decide = ReportScorer(table, scoring(), PARTITIONS), Feed(), Decisions()
    r = report(at(-1), verified=False)
    run(scorer, table, [feed(r)], at(-1))
    run(scorer, table, [decide(r, "rejected")], at(0))
    cell = Cell.from_bytes(table[KEY])
    assert cell.history[-1] == 0.0 and cell.weighted == 0.0


def test_a_decision_keeps_its_reason_when_later_reports_of_the_batch_raise_the_level():
    # The decision overtook its report; the report then arrives first in a batch whose later
    # reports cross the bound. The batch's one update for the cell is the last state, and it
    # still says who verified (CI once saw the reassessed update replace it, reason and all).
    table: dict[bytes, bytes] = {}
    sc = scoring()
    table[KEY] = seeded(sc, [1] * 10).to_bytes()  # upper bound 2.55 a day
    scorer, feed, decide = ReportScorer(table, sc, PARTITIONS), Feed(), Decisions()
    five = [report(at(0), verified=False) for _ in range(5)]
    assert run(scorer, table, [decide(five[0])], at(0)).updates == {}
    u = run(scorer, table, [feed(r) for r in five], at(0, minute=1)).updates["65.71|mass_mobilization"]
    assert (u.weighted, u.alarm, u.level) == (3.0, True, "waspada")
    assert u.reasons[-1] == f"laporan {five[0]['event_id']} diverifikasi oleh Budi Santoso"


def test_withdraw_falls_to_what_the_bucket_or_the_closed_buckets_still_call_for():
    h = Hysteresis()
    rise(h, "awas")
    assert withdraw(h, "waspada") and (h.level, h.quiet, h.peak) == ("waspada", 0, "normal")
    assert not withdraw(h, "waspada") and h.level == "waspada"   # still over its bound: stays
    assert withdraw(h, "normal") and h.level == "normal"
    # Closed buckets held siaga, one quiet bucket of two seen: the bucket's own awas goes, their siaga stays,
    # with its quiet count.
    held = Hysteresis(level="siaga")
    close_bucket(held, "waspada", 2)
    rise(held, "awas")
    assert withdraw(held, "normal") and (held.level, held.quiet, held.peak) == ("siaga", 1, "waspada")
    assert not withdraw(held, "normal")
    # State kept before `opened` existed: nothing to fall back to, the level stays.
    old = Hysteresis(level="awas", opened=None)
    assert not withdraw(old, "normal") and old.level == "awas"


def test_a_rejection_that_takes_the_bucket_under_its_bound_lowers_the_level_at_once():
    sc = scoring()
    table: dict[bytes, bytes] = {KEY: seeded(sc, [1] * 10).to_bytes()}  # upper bound 2.55 a day
    scorer, feed, decide = ReportScorer(table, sc, PARTITIONS), Feed(), Decisions()
    six = [report(at(0), verified=False) for _ in range(6)]
    u = run(scorer, table, [feed(r) for r in six], at(0)).updates["65.71|mass_mobilization"]
    assert (u.weighted, u.level) == (3.0, "waspada")
    # One more and one rejected: 3.0 again, still over the bound, the level stays.
    seventh = report(at(0), verified=False)
    u = run(scorer, table, [feed(seventh), decide(six[0], "rejected")], at(0, minute=1)).updates[
        "65.71|mass_mobilization"]
    assert (u.weighted, u.level) == (3.0, "waspada") and not u.reasons[0].startswith("turun")
    # A second rejection: 2.5, under 2.55. Normal now, not after hysteresis_buckets quiet days.
    u = run(scorer, table, [decide(six[1], "rejected")], at(0, minute=2)).updates["65.71|mass_mobilization"]
    assert (u.weighted, u.alarm, u.level) == (2.5, False, "normal")
    assert u.reasons[0] == "turun dari waspada: laporan yang menaikkannya ditolak"
    assert u.reasons[-1] == f"laporan {six[1]['event_id']} ditolak oleh Budi Santoso"
    cell = Cell.from_bytes(table[KEY])
    assert cell.hold.level == "normal" and cell.hold.opened == ["normal", 0, "normal"]


def test_a_level_the_closed_days_hold_does_not_fall_with_a_rejection_today():
    table: dict[bytes, bytes] = {}
    scorer, feed, decide = ReportScorer(table, scoring(), PARTITIONS), Feed(), Decisions()
    run(scorer, table, [feed(report(at(-1), verified=True, severity=5))], at(-1))   # yesterday: awas
    today = report(at(0), verified=False, severity=5)
    run(scorer, table, [feed(today)], at(0))
    box = run(scorer, table, [decide(today, "rejected")], at(0, minute=1))
    u = box.updates["65.71|mass_mobilization"]
    assert u.level == "awas" and u.reasons[0].startswith("level awas dipertahankan")
