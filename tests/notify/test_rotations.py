"""On-call rotations: turns change hands at the region's local time (WIB/WITA/WIT), overrides
win, and the config refuses what cannot work."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from shared.notify_config import Override, Rotation
from services.notify.rotations import next_handover, on_call

UTC = timezone.utc
WIB, WITA, WIT = (timezone(timedelta(hours=h)) for h in (7, 8, 9))


def rot(region: str, handover: str = "weekly", at: str = "08:00", **kw) -> Rotation:
    return Rotation(region=region, members=["a", "b", "c"], handover=handover, handover_at=at,
                    start=date(2024, 11, 4), **kw)


def test_weekly_turns_change_at_the_local_handover_time_in_wita():
    r = rot("65.71")  # Kota Tarakan, Kalimantan Utara: WITA
    assert on_call(r, datetime(2024, 11, 4, 8, 0, tzinfo=WITA)) == "a"
    assert on_call(r, datetime(2024, 11, 11, 7, 59, tzinfo=WITA)) == "a"
    assert on_call(r, datetime(2024, 11, 11, 8, 0, tzinfo=WITA)) == "b"
    assert on_call(r, datetime(2024, 11, 18, 8, 0, tzinfo=WITA)) == "c"
    assert on_call(r, datetime(2024, 11, 25, 8, 0, tzinfo=WITA)) == "a"  # round again


def test_the_same_instant_seen_in_utc_gives_the_same_answer():
    r = rot("65.71")
    # 08:00 WITA is 00:00 UTC
    assert on_call(r, datetime(2024, 11, 11, 0, 0, tzinfo=UTC)) == "b"
    assert on_call(r, datetime(2024, 11, 10, 23, 59, 59, tzinfo=UTC)) == "a"


@pytest.mark.parametrize("region,tz", [("32.73", WIB), ("65.71", WITA), ("81.71", WIT)])
def test_each_time_zone_hands_over_at_its_own_local_time(region, tz):
    r = rot(region, handover="daily", at="07:30")
    handover = datetime(2024, 11, 5, 7, 30, tzinfo=tz)
    assert on_call(r, handover - timedelta(seconds=1)) == "a"
    assert on_call(r, handover) == "b"
    assert next_handover(r, handover - timedelta(seconds=1)) == handover


def test_before_the_start_the_turns_run_backwards():
    r = rot("65.71", handover="daily")
    assert on_call(r, datetime(2024, 11, 4, 7, 59, tzinfo=WITA)) == "c"
    assert on_call(r, datetime(2024, 11, 3, 7, 59, tzinfo=WITA)) == "b"


def test_overrides_win_and_the_last_listed_wins_among_overlaps():
    r = rot("65.71", overrides=[
        Override(contact="x", start=datetime(2024, 11, 6, 0, 0, tzinfo=WITA), end=datetime(2024, 11, 7, 0, 0, tzinfo=WITA)),
        Override(contact="y", start=datetime(2024, 11, 6, 12, 0), end=datetime(2024, 11, 6, 13, 0)),  # local time
    ])
    assert on_call(r, datetime(2024, 11, 6, 11, 59, tzinfo=WITA)) == "x"
    assert on_call(r, datetime(2024, 11, 6, 12, 30, tzinfo=WITA)) == "y"
    assert on_call(r, datetime(2024, 11, 6, 13, 0, tzinfo=WITA)) == "x"  # end is exclusive
    assert on_call(r, datetime(2024, 11, 7, 0, 0, tzinfo=WITA)) == "a"


def test_runtime_overrides_come_after_the_configured_ones():
    r = rot("65.71", overrides=[Override(contact="x", start=datetime(2024, 11, 6, 0, 0, tzinfo=WITA),
                                         end=datetime(2024, 11, 7, 0, 0, tzinfo=WITA))])
    extra = [Override(contact="z", start=datetime(2024, 11, 6, 0, 0, tzinfo=WITA),
                      end=datetime(2024, 11, 6, 6, 0, tzinfo=WITA))]
    assert on_call(r, datetime(2024, 11, 6, 1, 0, tzinfo=WITA), extra) == "z"
    assert on_call(r, datetime(2024, 11, 6, 7, 0, tzinfo=WITA), extra) == "x"


def test_naive_time_is_refused():
    with pytest.raises(ValueError):
        on_call(rot("65.71"), datetime(2024, 11, 6, 1, 0))


@pytest.mark.parametrize("bad", [
    {"region": "65.99"},
    {"region": "65.71.02"},
    {"handover_at": "24:00"},
    {"handover": "monthly"},
    {"members": []},
    {"overrides": [{"contact": "x", "start": "2024-11-06T10:00:00+08:00", "end": "2024-11-06T09:00:00+08:00"}]},
    {"overrides": [{"contact": "x", "start": "2024-11-06T10:00:00", "end": "2024-11-06T11:00:00+08:00"}]},
    {"colour": "red"},
])
def test_bad_rotations_are_refused(bad):
    doc = {"region": "65.71", "members": ["a"], "start": "2024-11-04", **bad}
    with pytest.raises(ValidationError):
        Rotation.model_validate(doc)
