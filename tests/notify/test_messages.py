"""Notices and their wording: the contract JSON, Bahasa Indonesia and English text, the SMS
form (≤ max_chars, link whole), and personal data masked before text reaches a phone."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notify.messages import (
    CATEGORY_NAMES,
    STATUSES,
    Notice,
    ascii_fold,
    category_name,
    local_time,
    mask_text,
    render_text,
    subject,
    webhook_body,
)
from shared.categories import CATEGORIES
from tests.notify.conftest import notice

PERSON = ("Budi Santoso", "6571011508950001", "0812-3456-7890", "budi.santoso@gmail.com")


def test_webhook_body_is_exactly_the_contract_event() -> None:
    n = notice()
    body = json.loads(webhook_body(n))
    assert list(body) == ["version", "incident_id", "status", "level", "region_code", "region_name", "category",
                          "step", "summary", "reasons", "report_ids", "ack_url", "opened_at", "updated_at"]
    assert body["version"] == "1" and body["step"] == 1
    assert body["reasons"] == list(n.reasons) and body["report_ids"] == list(n.report_ids)
    # The escalation event as published; the webhook does not rewrite it.
    assert body["summary"] == n.summary
    assert Notice.from_dict(body) == n


def test_notice_refuses_values_outside_the_contract() -> None:
    with pytest.raises(ValueError, match="status"):
        notice(status="opened")
    with pytest.raises(ValueError, match="level"):
        notice(level="merah")
    with pytest.raises(ValueError, match="category"):
        notice(category="riot")
    with pytest.raises(ValueError, match="unknown notice field"):
        Notice.from_dict({**notice().to_dict(), "severity": 5})


def test_every_category_has_a_name_in_both_languages() -> None:
    for lang in ("id", "en"):
        assert set(CATEGORY_NAMES[lang]) == set(CATEGORIES)
    assert category_name("communal_clash") == "Bentrok antarkelompok"
    assert category_name("communal_clash", "en") == "Communal clash"


def test_long_text_in_bahasa_indonesia() -> None:
    text = render_text(notice())
    assert text.startswith("[SIAGA] Kota Tarakan (65.71)\nPengerahan massa - BARU, langkah 1")
    assert "Alasan:\n- 7 laporan hari ini" in text
    assert "Laporan: 3" in text
    assert "Sejak: 27 Nov 2024 14:05 WITA" in text  # 06:05 UTC in Tarakan (UTC+8)
    assert text.endswith("Konfirmasi: https://pantau.kaltaraprov.go.id/ack/eyJpIjoxfQ.Zm9vYmFy")


def test_long_text_in_english() -> None:
    text = render_text(notice(status="escalated", step=2), "en")
    assert text.startswith("[SIAGA (alert)] Kota Tarakan (65.71)\nMass mobilisation - ESCALATED, step 2")
    assert "Why:\n- " in text and "Since: 27 Nov 2024 14:05 WITA" in text
    assert text.endswith("Acknowledge: https://pantau.kaltaraprov.go.id/ack/eyJpIjoxfQ.Zm9vYmFy")


@pytest.mark.parametrize("status, word_id, word_en, link_id", [
    ("triggered", "BARU", "NEW", "Konfirmasi"),
    ("escalated", "ESKALASI", "ESCALATED", "Konfirmasi"),
    ("acknowledged", "DITANGANI", "ACKNOWLEDGED", "Lihat"),
    ("resolved", "SELESAI", "RESOLVED", "Lihat"),
    ("reminder", "PENGINGAT", "REMINDER", "Konfirmasi"),
])
def test_status_words(status: str, word_id: str, word_en: str, link_id: str) -> None:
    n = notice(status=status)
    assert subject(n) == f"[SIAGA] Kota Tarakan: Pengerahan massa ({word_id})"
    assert subject(n, "en") == f"[SIAGA] Kota Tarakan: Mass mobilisation ({word_en})"
    assert f"{link_id}: https://" in render_text(n)


def test_times_are_in_the_regions_own_zone() -> None:
    assert local_time("2024-11-27T06:05:00Z", "31.71") == "27 Nov 2024 13:05 WIB"
    assert local_time("2024-11-27T06:05:00+00:00", "65.71") == "27 Nov 2024 14:05 WITA"
    assert local_time("2024-08-17T03:00:00Z", "94.71", "en") == "17 Aug 2024 12:00 WIT"
    assert local_time("2024-08-17T03:00:00Z", "94.71") == "17 Agu 2024 12:00 WIT"


def test_sms_text_fits_160_with_level_region_category_reason_and_link() -> None:
    for lang in ("id", "en"):
        text = render_text(notice(), lang, max_chars=160)
        assert len(text) <= 160 and text.isascii()
        assert text.startswith("SIAGA Kota Tarakan: ")
        assert "7 laporan hari ini" in text
        assert text.endswith("https://pantau.kaltaraprov.go.id/ack/eyJpIjoxfQ.Zm9vYmFy")
    assert render_text(notice(), max_chars=160) == (
        "SIAGA Kota Tarakan: Pengerahan massa. 7 laporan hari ini, perkiraan 1,7, batas atas 3,3... "
        "Konfirmasi: https://pantau.kaltaraprov.go.id/ack/eyJpIjoxfQ.Zm9vYmFy")


def test_sms_shortens_the_reason_never_the_link() -> None:
    long_reason = "Laporan berulang dari " + ", ".join(f"kelurahan {i}" for i in range(40))
    link = "https://pantau.kaltaraprov.go.id/ack/" + "t" * 24
    text = render_text(notice(reasons=[long_reason], ack_url=link), max_chars=160)
    assert len(text) <= 160 and text.endswith(" " + link)
    assert "Laporan berulang dari kelurahan 0" in text and "..." in text


def test_sms_without_reasons_uses_the_summary_and_says_what_changed() -> None:
    text = render_text(notice(reasons=[], status="resolved"), "id", max_chars=160)
    assert text.startswith("SIAGA Kota Tarakan: Pengerahan massa (SELESAI). Unjuk rasa")
    assert "Lihat: https://" in text


def test_sms_with_a_link_longer_than_the_limit_is_the_link() -> None:
    link = "https://pantau.kaltaraprov.go.id/ack/" + "x" * 200
    assert render_text(notice(ack_url=link), max_chars=160) == f"Konfirmasi: {link}"


@settings(max_examples=200, deadline=None)
@given(
    region=st.text(min_size=1, max_size=60),
    reasons=st.lists(st.text(max_size=300), max_size=3),
    summary=st.text(max_size=300),
    url_len=st.integers(0, 110),
    status=st.sampled_from(STATUSES),
    lang=st.sampled_from(["id", "en"]),
    max_chars=st.sampled_from([70, 120, 160, 320]),
)
def test_short_text_always_fits_and_keeps_the_link(region: str, reasons: list[str], summary: str, url_len: int,
                                                   status: str, lang: str, max_chars: int) -> None:
    link = "https://p.go.id/ack/" + "a" * url_len
    n = notice(region_name=region, reasons=reasons, summary=summary, ack_url=link, status=status)
    text = render_text(n, lang, max_chars=max_chars)  # type: ignore[arg-type]
    assert text.endswith(link)
    assert len(text) <= max(max_chars, len(f"Acknowledge: {link}"))
    assert all(c.isascii() and c not in "[]{}\\|^~`" for c in text[: len(text) - len(link)])


@pytest.mark.parametrize("max_chars", [None, 160])
@pytest.mark.parametrize("lang", ["id", "en"])
def test_personal_data_is_masked_in_every_text(max_chars: int | None, lang: str) -> None:
    n = notice(reasons=["Koordinator Siti Rahmawati, HP +62 813 2222 3333, NIK 6571014101900002"],
               summary="Hubungi budi.santoso@gmail.com atau 0812-3456-7890 (Budi Santoso, NIK 6571011508950001)")
    text = render_text(n, lang, max_chars=max_chars)  # type: ignore[arg-type]
    for value in (*PERSON, "Siti Rahmawati", "+62 813 2222 3333", "6571014101900002", "81322223333"):
        assert value not in text
    if max_chars is None:
        assert "6571********0001" in text and "0812****7890" in text and "b***@gmail.com" in text
        assert "B*** S***" in text


def test_masking_keeps_the_region_and_operational_words() -> None:
    text = "Bentrok di Kecamatan Tarakan Barat, Kota Tarakan: 7 laporan, severity 5, 18 TPS PSU"
    assert mask_text(text, ("Kota Tarakan",)) == text
    n = notice(region_name="Tana Tidung", region_code="65.04", summary="Massa berkumpul di Tana Tidung")
    assert "Massa berkumpul di Tana Tidung" in render_text(n)


def test_ascii_fold_keeps_gsm_safe_text() -> None:
    assert ascii_fold("Pemilu — “PSU” di Sulawesi… [TPS 5] ≥ 3") == "Pemilu - \"PSU\" di Sulawesi... (TPS 5) >= 3"
    assert ascii_fold("Désa Ñusa") == "Desa Nusa"


def test_notice_is_immutable_and_hashable() -> None:
    n = notice()
    with pytest.raises(dataclasses.FrozenInstanceError):
        n.level = "awas"  # type: ignore[misc]
    assert isinstance(n.reasons, tuple) and hash(n) == hash(notice())
