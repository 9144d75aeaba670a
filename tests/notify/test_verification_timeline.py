"""A score update that names a decision on one of the incident's reports ("diverifikasi oleh
…") writes it into the incident's timeline once, at the same level, and a replay adds nothing."""

from __future__ import annotations

from services.notify.transitions import apply_update, open_incident
from tests.notify.test_incidents import POLICIES, opened, update


def test_a_verification_reaches_the_timeline_once():
    inc = opened("siaga").incident
    why = "laporan fkdm-1 diverifikasi oleh Budi Santoso"
    u = update("siaga", reasons=("7 reports today vs expected 1.7", why))
    ch = apply_update(inc, u, POLICIES, 2, 1100.0)
    assert ch is not None
    assert [(e["kind"], e.get("message")) for e in ch.timeline] == [("verification", why)]
    assert ch.incident.level == "siaga" and why in ch.incident.reasons
    assert apply_update(ch.incident, u, POLICIES, 2, 1200.0) is None


def test_a_rejection_is_recorded_too():
    inc = opened("waspada").incident
    why = "laporan fkdm-2 ditolak oleh Sari"
    ch = apply_update(inc, update("waspada", reasons=("2 reports", why)), POLICIES, 2, 1100.0)
    assert ch is not None and ch.timeline[-1]["message"] == why


def test_normal_after_a_rejection_resolves_at_once():
    inc = opened("siaga").incident
    why = "laporan fkdm-3 ditolak oleh Sari"
    u = update("normal", reasons=("turun dari siaga: laporan yang menaikkannya ditolak", why))
    ch = apply_update(inc, u, POLICIES, 3, 1100.0)
    assert ch is not None and ch.incident.status == "resolved" and ch.resolved == "auto"
    assert [e["kind"] for e in ch.timeline] == ["verification", "level", "resolved"]
    assert ch.timeline[0]["message"] == why and ch.incident.level == "normal"
    assert ch.incident.note == "normal after a rejected report" and ch.events[-1][0] == "resolved"
    # A genuine report of the same bucket opens a new incident: the false one closed at normal.
    closed = {"level": ch.incident.level, "bucket": ch.incident.last_alert_bucket}
    assert open_incident("inc-2", update("waspada"), POLICIES, 1300.0, closed=closed) is not None
    assert apply_update(ch.incident, u, POLICIES, 3, 1200.0) is None  # a replay changes nothing
    # Normal without a decision is a quiet bucket, as before: 1 of 3.
    quiet = apply_update(inc, update("normal"), POLICIES, 3, 1100.0)
    assert quiet is not None and quiet.incident.status != "resolved" and quiet.timeline[-1]["kind"] == "quiet"
