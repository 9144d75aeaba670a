"""Policy decisions as pure functions: routing, the escalation clock, level rises, who a
step reaches, and silences. No Redis, no Kafka, no clock: every `now` is given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import pytest

from shared.channels_config import ContactConfig, channel_config
from shared.notify_config import Policy, Rotation, Step
from services.notify.policy import (
    Escalation,
    Fire,
    Idle,
    Recipient,
    Wait,
    level_step,
    next_action,
    on_level_rise,
    firing_recipients,
    reach,
    recipients,
    resolve_targets,
    route,
    silenced_by,
    start,
    stop,
)


@dataclass
class Inc:
    region_code: str
    category: str
    level: str


def policy(pid: str, region: str | None = None, categories=None, min_level: str = "waspada", **kw) -> Policy:
    match = {"min_level": min_level}
    if region:
        match["region"] = region
    if categories:
        match["categories"] = categories
    return Policy.model_validate({"id": pid, "match": match,
                                  "steps": kw.pop("steps", [{"notify": ["oncall:kabkota"]}]), **kw})


# --- route -------------------------------------------------------------------------------------
POLICIES = [
    policy("national"),
    policy("kaltara", region="65"),
    policy("tarakan", region="65.71"),
    policy("kaltara-election", region="65", categories=["election_dispute"]),
    policy("kaltara-awas", region="65", min_level="awas"),
]


def test_route_picks_the_deepest_region_prefix():
    assert route(Inc("65.71", "mass_mobilization", "waspada"), POLICIES).id == "tarakan"
    assert route(Inc("65.01", "mass_mobilization", "waspada"), POLICIES).id == "kaltara"
    assert route(Inc("32.73", "mass_mobilization", "waspada"), POLICIES).id == "national"


def test_route_prefers_a_category_match_at_the_same_depth():
    assert route(Inc("65.01", "election_dispute", "siaga"), POLICIES).id == "kaltara-election"
    # a deeper region still wins over a category at a shallower one
    assert route(Inc("65.71", "election_dispute", "siaga"), POLICIES).id == "tarakan"


def test_route_respects_min_level_and_prefers_higher_minimum():
    assert route(Inc("65.02", "communal_clash", "siaga"), POLICIES).id == "kaltara"
    assert route(Inc("65.02", "communal_clash", "awas"), POLICIES).id == "kaltara-awas"
    only_siaga = [policy("p", min_level="siaga")]
    assert route(Inc("65.02", "communal_clash", "waspada"), only_siaga) is None


def test_route_prefix_is_on_a_dot_boundary_and_ties_keep_config_order():
    # "65.7" is not a prefix of "65.71" in the region sense; validation forbids unknown codes anyway
    ps = [policy("first", region="65"), policy("second", region="65")]
    assert route(Inc("65.71", "other", "waspada"), ps).id == "first"
    assert route(Inc("64.71", "other", "waspada"), [policy("x", region="65")]) is None


def test_route_none_without_policies():
    assert route(Inc("65.71", "other", "awas"), []) is None


# --- next_action ------------------------------------------------------------------------------
THREE = Policy.model_validate({
    "id": "three",
    "steps": [
        {"notify": ["oncall:kabkota"], "wait_minutes": 10, "repeat": 1},
        {"notify": ["oncall:province"], "wait_minutes": 5},
        {"notify": ["operators"], "wait_minutes": 20},
    ],
    "level_steps": {"siaga": 1, "awas": 2},
    "repeat": 1,
})


def run_until_idle(esc: Escalation, p: Policy, now: float, limit: int = 50) -> list[Fire]:
    """Advance the clock to each due time and collect the firings."""
    fires = []
    for _ in range(limit):
        a = next_action(esc, p, now)
        if isinstance(a, Idle):
            return fires
        if isinstance(a, Wait):
            now = a.until
            continue
        fires.append(a)
        esc = a.then
    raise AssertionError("never went idle")


def test_first_step_fires_at_once_and_the_next_waits():
    esc = start(THREE, "waspada", now=1000.0)
    a = next_action(esc, THREE, 1000.0)
    assert isinstance(a, Fire) and a.step == 0 and a.status == "triggered"
    assert a.event_key == "step:0:0.0:e0"
    assert next_action(a.then, THREE, 1000.0) == Wait(1000.0 + 600)
    assert next_action(a.then, THREE, 1599.0) == Wait(1600.0)


def test_full_sequence_with_step_repeats_and_policy_repeat():
    fires = run_until_idle(start(THREE, "waspada", 0.0), THREE, 0.0)
    seq = [(f.step, f.escalation.cycle, f.escalation.rep, f.status, f.at) for f in fires]
    assert seq == [
        (0, 0, 0, "triggered", 0.0),
        (0, 0, 1, "reminder", 600.0),
        (1, 0, 0, "escalated", 1200.0),
        (2, 0, 0, "escalated", 1500.0),
        (0, 1, 0, "reminder", 2700.0),
        (0, 1, 1, "reminder", 3300.0),
        (1, 1, 0, "escalated", 3900.0),
        (2, 1, 0, "escalated", 4200.0),
    ]
    keys = [f.event_key for f in fires]
    assert len(set(keys)) == len(keys), "every firing has its own event key"


def test_due_times_chain_from_the_schedule_not_from_when_a_late_scheduler_ran():
    esc = start(THREE, "waspada", 0.0)
    late = next_action(esc, THREE, 5000.0)  # the process was down for a long time
    assert isinstance(late, Fire)
    assert late.then.due == 600.0  # still due: fires at once on the next look
    assert isinstance(next_action(late.then, THREE, 5000.0), Fire)


def test_replaying_a_due_firing_gives_the_same_event_key():
    esc = start(THREE, "waspada", 0.0)
    first = next_action(esc, THREE, 1.0)
    again = next_action(esc, THREE, 7.0)  # re-fire after a crash before the state was saved
    assert first.event_key == again.event_key and first.then == again.then


def test_ack_stops_timers():
    esc = next_action(start(THREE, "waspada", 0.0), THREE, 0.0).then
    assert next_action(stop(esc), THREE, 10_000.0) == Idle("nothing pending")


def test_no_policy_or_other_policy_is_idle():
    assert isinstance(next_action(start(None, "siaga", 0.0), None, 0.0), Idle)
    esc = start(THREE, "waspada", 0.0)
    other = THREE.model_copy(update={"id": "other"})
    assert isinstance(next_action(esc, other, 0.0), Idle)


def test_level_step_uses_the_highest_configured_level_at_or_below():
    assert level_step(THREE, "waspada") == 0
    assert level_step(THREE, "siaga") == 1
    assert level_step(THREE, "awas") == 2
    only_siaga = THREE.model_copy(update={"level_steps": THREE.level_steps.model_copy(update={"awas": None})})
    assert level_step(only_siaga, "awas") == 1


def test_open_at_a_high_level_starts_at_that_levels_step():
    a = next_action(start(THREE, "awas", 0.0), THREE, 0.0)
    assert a.step == 2 and a.status == "triggered"


def test_a_jump_also_pages_the_steps_it_passes_that_nobody_was_paged_for():
    # Opened at awas: the kabupaten/kota and the province hear it with the operators' step.
    a = next_action(start(THREE, "awas", 0.0), THREE, 0.0)
    assert a.steps == (0, 1, 2) and a.event_key == "step:2:0.0:e0"
    assert a.then.step == 0 and a.then.cycle == 1 and a.then.from_step is None  # the next firing is one step
    assert next_action(a.then, THREE, a.then.due).steps == (0,)
    # A rise after step 0 fired (and was acknowledged): only the steps not yet paged.
    esc = stop(next_action(start(THREE, "waspada", 0.0), THREE, 0.0).then)
    assert next_action(on_level_rise(esc, THREE, THREE, "awas", 60.0), THREE, 60.0).steps == (1, 2)
    assert next_action(on_level_rise(esc, THREE, THREE, "siaga", 60.0), THREE, 60.0).steps == (1,)
    # No jump, no company.
    assert next_action(start(THREE, "waspada", 0.0), THREE, 0.0).steps == (0,)


def test_level_rise_after_ack_jumps_at_once_with_a_new_epoch():
    esc = next_action(start(THREE, "waspada", 0.0), THREE, 0.0).then  # step 0 fired
    acked = stop(esc)
    risen = on_level_rise(acked, THREE, THREE, "siaga", now=300.0)
    a = next_action(risen, THREE, 300.0)
    assert isinstance(a, Fire)
    assert (a.step, a.status, a.at) == (1, "escalated", 300.0)
    assert a.event_key == "step:1:0.0:e1"
    assert a.then.due == 600.0 and a.then.step == 2  # and the escalation carries on from there


def test_level_rise_never_walks_back_below_the_step_reached():
    esc = start(THREE, "waspada", 0.0)
    for now in (0.0, 600.0, 1200.0, 1500.0):  # steps 0, 0 (repeat), 1, 2 fired
        esc = next_action(esc, THREE, now).then
    assert esc.last_step == 2
    risen = on_level_rise(esc, THREE, THREE, "siaga", now=1600.0)  # siaga's step is 1
    assert next_action(risen, THREE, 1600.0).step == 2


def test_level_rise_into_another_policy_starts_at_its_level_step():
    other = Policy.model_validate({"id": "prov", "steps": [{"notify": ["oncall:province"]},
                                                           {"notify": ["operators"]}],
                                   "level_steps": {"awas": 1}})
    esc = next_action(start(THREE, "waspada", 0.0), THREE, 0.0).then
    risen = on_level_rise(esc, THREE, other, "awas", now=50.0)
    a = next_action(risen, other, 50.0)
    assert (a.step, a.escalation.policy_id, a.status) == (1, "prov", "escalated")


def test_policy_validation_names_a_level_step_out_of_range():
    with pytest.raises(ValueError, match="level_steps.awas is step 3"):
        Policy.model_validate({"id": "x", "steps": [{"notify": ["operators"]}], "level_steps": {"awas": 3}})
    with pytest.raises(ValueError):
        Step.model_validate({"notify": ["oncall:nobody"]})


# --- targets and recipients -------------------------------------------------------------------
ROTATIONS = [
    Rotation(region="65.71", members=["budi", "sari"], handover="daily", handover_at="08:00", start=date(2024, 11, 1)),
    Rotation(region="65", members=["prov-a"], start=date(2024, 11, 1)),
]
AT = datetime(2024, 11, 27, 1, 0, tzinfo=timezone.utc)  # 09:00 WITA on 27 Nov: day 26 → "budi"


def test_targets_resolve_rotations_contacts_and_operators_without_repeats():
    step = Step(notify=["oncall:kabkota", "contact:sari", "oncall:province", "operators", "contact:budi"])
    got, notes = resolve_targets(step, "65.71", ROTATIONS, ["op1", "prov-a"], AT)
    assert got == ["budi", "sari", "prov-a", "op1"]
    assert notes == []


def test_kabkota_without_rotation_goes_up_to_the_province():
    got, notes = resolve_targets(Step(notify=["oncall:kabkota"]), "65.02", ROTATIONS, [], AT)
    assert got == ["prov-a"]
    assert "province's on-call stands in" in notes[0]
    got, notes = resolve_targets(Step(notify=["oncall:kabkota"]), "65", ROTATIONS, [], AT)
    assert got == ["prov-a"] and notes == []


def test_targets_that_reach_nobody_are_explained():
    got, notes = resolve_targets(Step(notify=["oncall:province", "operators"]), "32.73", ROTATIONS, [], AT)
    assert got == []
    assert any("no rotation for 32" in n for n in notes) and any("operator" in n for n in notes)


CHANNELS = [
    channel_config({"id": "tg", "type": "telegram", "bot_token": "123:abc"}),
    channel_config({"id": "mail", "type": "email", "host": "smtp.local", "sender": "p@example.go.id"}),
    channel_config({"id": "sms", "type": "sms", "url": "http://sms.local/send",
                    "body_template": '{{"to": "{to}", "text": "{text}"}}'}),
    channel_config({"id": "hook", "type": "webhook", "url": "http://hook.local/", "secret": "policy-test-webhook-secret-0123456789"}),
]
CONTACTS = [
    ContactConfig(id="budi", name="Budi", telegram_chat_id=42, phone="081234567890"),
    ContactConfig(id="sari", name="Sari", email="sari@example.go.id", telegram_chat_id=43),
    ContactConfig(id="andi", name="Andi", phone="081298765432"),
]


def test_reach_defaults_skip_sms_which_becomes_the_fallback():
    r = reach(CONTACTS, CHANNELS)
    assert r["budi"].defaults == ("tg",) and r["budi"].fallback == "sms"
    assert r["sari"].defaults == ("tg", "mail") and r["sari"].fallback is None
    assert r["andi"].defaults == ("sms",)


def test_recipients_use_step_channels_where_the_contact_has_an_address():
    r = reach(CONTACTS, CHANNELS)
    got, notes = recipients(Step(notify=["operators"]), ["budi", "sari"], r)
    assert got == [Recipient("budi", "tg", "sms"), Recipient("sari", "tg"), Recipient("sari", "mail")]
    got, notes = recipients(Step(notify=["operators"], channels=["mail"]), ["budi", "sari"], r)
    assert got == [Recipient("budi", "tg", "sms"), Recipient("sari", "mail", "tg")]
    assert "budi" in notes[0]
    got, _ = recipients(Step(notify=["operators"], channels=["hook"]), ["andi"], r, shared_channels=["hook"])
    assert got == [Recipient("andi", "hook", "sms")]


def test_a_firing_that_jumps_reaches_each_passed_step_once_and_says_why():
    p = Policy.model_validate({"id": "kaltara", "steps": [{"notify": ["oncall:kabkota", "contact:sari"]},
                                                          {"notify": ["oncall:province", "contact:sari"]}],
                               "level_steps": {"awas": 1}, "repeat": 1})
    r = reach([*CONTACTS, ContactConfig(id="prov-a", name="Prov", telegram_chat_id=44)], CHANNELS)
    jump = next_action(start(p, "awas", 0.0), p, 0.0)
    got, notes = firing_recipients(p, jump, "65.71", ROTATIONS, [], AT, r)
    assert got == [Recipient("budi", "tg", "sms"), Recipient("sari", "tg"), Recipient("sari", "mail"),
                   Recipient("prov-a", "tg")]
    assert notes == ["jumped to step 1 for its level; step 0, not paged yet, paged with it"]
    later = next_action(jump.then, p, jump.then.due)  # the policy's next firing: step 0 alone
    got, notes = firing_recipients(p, later, "65.71", ROTATIONS, [], AT, r)
    assert [x.contact for x in got] == ["budi", "sari", "sari"] and notes == []


# --- silences ---------------------------------------------------------------------------------
def test_silences_match_region_prefix_and_category_while_active():
    s = [{"id": "a", "matchers": {"region": "65"}, "starts_at": 0, "ends_at": 100},
         {"id": "b", "matchers": {"region": "65.71", "category": "hoax_disinformation"}, "starts_at": 0, "ends_at": 500},
         {"id": "c", "matchers": {"category": "other"}, "starts_at": 0, "ends_at": 900, "deleted_at": 5}]
    assert silenced_by(s, "65.71", "hoax_disinformation", 50)["id"] == "b"  # the longest wins
    assert silenced_by(s, "65.71", "communal_clash", 50)["id"] == "a"
    assert silenced_by(s, "65.71", "communal_clash", 100) is None  # expired
    assert silenced_by(s, "64.71", "other", 50) is None  # c was deleted
    assert silenced_by(s, "32.73", "hoax_disinformation", 50) is None
