"""Field reports from people on the whole embedded pipeline: the reporters' Telegram bot (a
local server speaking the Bot API's HTTP protocol), the inbound SMS webhook, and what reaches
pantau.reports.v1, the coordinators' pages and the service logs of the reporter (nothing)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Iterator

import httpx
import orjson
import pytest

from cli.stack import EmbeddedStack, free_port
from shared import topics
from tests.conftest import write_config
from tests.ingest.telegram_peer import ReportersBotApi
from tests.notify.peers import KALTARA_ROTATIONS_YAML, HttpReceiver, kaltara_people_yaml
from tests.utils import collect, fast_notify_section, value, operator_client, gateway_client

pytestmark = pytest.mark.slow

OP_TOKEN = "field-operator-token-kaltara"
HOOK_SECRET = "field-webhook-secret-0123456789-Mv3kQz"
SMS_SECRET = "sms-gateway-secret-0123456789abcdef"
BOT_TOKEN = "4242:reporters-bot-token"
SITI = 700100               # Telegram user id of an enrolled reporter (Kota Tarakan)
SITI_NAME = "Siti Rahmawati"
SITI_PHONE = "+6281234500001"
STRANGER = 700999


@pytest.fixture(scope="module")
def bot() -> Iterator[ReportersBotApi]:
    b = ReportersBotApi(BOT_TOKEN, {SITI, STRANGER})
    yield b
    b.close()


@pytest.fixture(scope="module")
def hook() -> Iterator[HttpReceiver]:
    h = HttpReceiver()
    yield h
    h.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, bot: ReportersBotApi, hook: HttpReceiver) -> Iterator[EmbeddedStack]:
    tmp = tmp_path_factory.mktemp("field")
    notify_port = free_port()
    cfg = write_config(tmp / "pantau.yaml", f"""
scoring:
  web_port: {free_port()}
  tick_interval_s: 1
{kaltara_people_yaml(hook.url, OP_TOKEN, HOOK_SECRET)}
policies:
  - id: kaltara
    match: {{region: "65"}}
    steps:
      - {{notify: ["oncall:kabkota"], wait_minutes: 30}}
{KALTARA_ROTATIONS_YAML}
{fast_notify_section(notify_port, "field-link-secret-0123456789abcdef", operators=False)}
reporters:
  - id: rp-tarakan-01
    name: "{SITI_NAME}"
    telegram_user_id: {SITI}
    phone: "{SITI_PHONE}"
    regions: ["65.71"]
    source: fkdm-kaltara
  - id: rp-tarakan-02
    name: "Camat Tarakan Timur"
    phone: "+6281234500002"
    regions: ["65.71.03"]
    source: fkdm-kaltara
reporting:
  rate_limit_per_hour: 20
  telegram:
    bot_token: "{BOT_TOKEN}"
    base_url: "{bot.url}"
    poll_timeout_s: 2
  sms:
    secret: "{SMS_SECRET}"
""")
    with EmbeddedStack(cfg, tmp, ("ingest-gateway", "scoring", "notify")) as s:
        yield s


@pytest.fixture(scope="module")
def gw(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with gateway_client(stack) as c:
        yield c


def reports_with(stack: EmbeddedStack, event_id: str) -> list[dict]:
    """Every copy of `event_id` on pantau.reports.v1 (read to the end: a second copy would show)."""
    boot = stack.config.kafka.bootstrap_servers
    marker = asyncio.run(_end_offsets(boot))
    got = asyncio.run(collect(boot, [topics.REPORTS_V1], lambda ms: _reached(ms, marker)))
    return [value(m) for m in got if value(m)["event_id"] == event_id]


async def _end_offsets(boot: str) -> dict[int, int]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=boot)
    await c.start()
    try:
        parts = [TopicPartition(topics.REPORTS_V1, p) for p in c.partitions_for_topic(topics.REPORTS_V1) or []]
        if not parts:
            await c.client.force_metadata_update()
            parts = [TopicPartition(topics.REPORTS_V1, p) for p in c.partitions_for_topic(topics.REPORTS_V1)]
        ends = await c.end_offsets(parts)
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        await c.stop()


def _reached(msgs: list, marker: dict[int, int]) -> bool:
    last: dict[int, int] = {}
    for m in msgs:
        last[m.partition] = max(last.get(m.partition, -1), m.offset)
    return all(last.get(p, -1) >= end - 1 for p, end in marker.items())


def lapor(bot: ReportersBotApi, user: int, place: str = "Selumit", anonymous: bool = False,
          severity: int = 3, casualties: int = 0) -> tuple[str, int]:
    """Walk the /lapor conversation up to the summary; returns the report number and how many
    messages the bot has sent to the user so far."""
    n = len(bot.texts(user))
    bot.push_message(user, "/lapor")
    first = bot.wait_text(user, n := n + 1)
    assert first.startswith("Laporan LAP-") and "Pilih kategori" in first
    number = first.split()[1].rstrip(".")
    assert "cat:mass_mobilization" in bot.buttons(user)
    bot.press(user, "cat:mass_mobilization")
    assert "Di mana kejadiannya?" in bot.wait_text(user, n := n + 1)
    bot.push_message(user, place)
    assert "Tempat: Selumit" in bot.wait_text(user, n := n + 1)
    bot.push_message(user, "Sekitar 200 orang berkumpul di depan kantor KPU, Siti melihat sendiri")
    assert "Seberapa parah" in bot.wait_text(user, n := n + 1)
    bot.press(user, f"sev:{severity}")
    assert "Berapa korban" in bot.wait_text(user, n := n + 1)
    bot.push_message(user, str(casualties))
    assert "anonim" in bot.wait_text(user, n := n + 1)
    bot.press(user, "anon:1" if anonymous else "anon:0")
    summary = bot.wait_text(user, n := n + 1)
    assert summary.startswith(f"Ringkasan laporan {number}") and "Kota Tarakan" in summary
    return number, n


def test_an_enrolled_reporter_completes_lapor_and_confirming_twice_makes_one_report(stack, bot):
    number, n = lapor(bot, SITI)
    bot.press(SITI, f"send:{number[4:]}")
    bot.press(SITI, f"send:{number[4:]}")  # a second tap on Kirim
    assert bot.wait_text(SITI, n + 1).startswith(f"Laporan diterima. Nomor laporan: {number}.")
    assert bot.wait_text(SITI, n + 2) == f"Laporan {number} sudah diterima sebelumnya."
    [r] = reports_with(stack, f"lapor-{number[4:]}")
    assert (r["source"], r["region_code"], r["category"], r["verified"], r["severity"]) == \
        ("fkdm-kaltara", "65.71.02.1004", "mass_mobilization", False, 3)
    assert r["attributes"] == {"channel": "telegram", "report_number": number, "reporter": "rp-tarakan-01"}


def test_a_stranger_is_refused(stack, bot):
    bot.push_message(STRANGER, "/lapor")
    assert "belum terdaftar sebagai pelapor" in bot.wait_text(STRANGER, 1)
    assert bot.buttons(STRANGER) == []


def test_a_bad_location_is_asked_again(stack, bot):
    n = len(bot.texts(SITI))
    bot.push_message(SITI, "/lapor")
    bot.wait_text(SITI, n := n + 1)
    bot.press(SITI, "cat:communal_clash")
    bot.wait_text(SITI, n := n + 1)
    bot.push_message(SITI, "Kampung Antah Berantah")
    assert "\u201cKampung Antah Berantah\u201d tidak ditemukan di wilayah tugas Anda" in bot.wait_text(SITI, n := n + 1)
    bot.share_location(SITI, 3.3, 118.5)  # the Sulawesi Sea: in no kabupaten/kota
    assert "Lokasi GPS tidak berada di kabupaten/kota mana pun" in bot.wait_text(SITI, n := n + 1)
    bot.share_location(SITI, 4.1, 117.0)  # Nunukan: a real place, outside her regions
    assert "Lokasi GPS berada di Kabupaten Nunukan (65.03), di luar wilayah tugas Anda" in \
        bot.wait_text(SITI, n := n + 1)
    bot.push_message(SITI, "Nunukan")
    assert "tidak ditemukan di wilayah tugas Anda" in bot.wait_text(SITI, n := n + 1)
    # On Tarakan island: placed in Kota Tarakan, its kecamatan offered as buttons.
    bot.share_location(SITI, 3.3, 117.6)
    assert "Lokasi GPS berada di Kota Tarakan (65.71). Pilih kecamatannya" in bot.wait_text(SITI, n := n + 1)
    assert bot.buttons(SITI) == ["place:65.71.01", "place:65.71.02", "place:65.71.03", "place:65.71.04"]
    bot.press(SITI, "place:65.71.02")
    assert "Tempat: Tarakan Tengah, Kota Tarakan (65.71.02)" in bot.wait_text(SITI, n := n + 1)
    bot.push_message(SITI, "/batal")
    assert bot.wait_text(SITI, n + 1) == "Laporan dibatalkan sebelum dikirim."


def test_batal_withdraws_ones_own_report_as_a_rejection(stack, bot):
    number, n = lapor(bot, SITI)
    bot.press(SITI, f"send:{number[4:]}")
    assert "Ketik /batal" in bot.wait_text(SITI, n := n + 1)
    bot.push_message(SITI, "/batal")
    assert bot.wait_text(SITI, n + 1) == f"Laporan {number} dibatalkan."
    boot = stack.config.kafka.bootstrap_servers
    [d] = asyncio.run(collect(boot, [topics.VERIFICATIONS_V1], lambda ms: len(ms) == 1,
                              where=lambda m: value(m)["event_id"] == f"lapor-{number[4:]}"))
    assert (value(d)["decision"], value(d)["by"], value(d)["by_name"]) == ("rejected", "reporter", "pelapor (dibatalkan)")


def sms(gw: httpx.Client, sender: str, text: str, secret: str = SMS_SECRET) -> httpx.Response:
    return gw.post("/v1/inbound/sms", data={"from": sender, "text": text}, headers={"Authorization": f"Bearer {secret}"})


def test_sms_good_message_bad_code_and_unknown_number(stack, gw):
    # As gateways send it ({to_digits}: 62812...), though the config says +62812...
    r = sms(gw, SITI_PHONE.lstrip("+"), "LAPOR massa 65.71.02 3 Ratusan orang berkumpul di depan kantor KPU")
    assert r.status_code == 200, r.text
    reply = r.json()["reply"]
    assert reply.startswith("Laporan diterima. Nomor laporan: LAP-") and r.json()["status"] == "accepted"
    number = r.json()["number"]
    again = sms(gw, SITI_PHONE, "LAPOR massa 65.71.02 3 Ratusan orang berkumpul di depan kantor KPU")
    assert (again.json()["number"], again.json()["status"]) == (number, "duplicate")  # the gateway retried
    [rep] = reports_with(stack, f"lapor-{number[4:]}")
    assert (rep["region_code"], rep["category"], rep["attributes"]["channel"]) == ("65.71.02", "mass_mobilization", "sms")

    bad = sms(gw, SITI_PHONE, "LAPOR bentrok 65.99.01 4 Dua kelompok pemuda saling lempar batu")
    assert bad.status_code == 200 and bad.json()["ok"] is False
    assert bad.json()["reply"] == ("Laporan tidak diterima: kode wilayah '65.99.01' tidak ada di registri "
                                   "Kemendagri (contoh: 65.71.02)")
    outside = sms(gw, SITI_PHONE, "LAPOR bentrok 65.03 4 Dua kelompok pemuda saling lempar batu")
    assert "kode wilayah 65.03 di luar wilayah tugas Anda (65.71)" in outside.json()["reply"]

    stranger = sms(gw, "+6289900000000", "LAPOR massa 65.71.02 3 Ratusan orang berkumpul di depan KPU")
    assert stranger.status_code == 403 and stranger.json()["type"] == "urn:pantau:problem:forbidden"
    assert sms(gw, SITI_PHONE, "LAPOR massa 65.71.02 3 teks apa saja", secret="wrong").status_code == 401
    metrics = gw.get("/metrics").text
    assert 'pantau_field_reports_total{channel="sms",outcome="stranger"} 1.0' in metrics
    assert 'pantau_reports_accepted_total{path="sms",source="fkdm-kaltara"} 1.0' in metrics


def test_the_reporter_reaches_neither_reports_nor_pages_nor_logs(stack, bot, hook):
    # An anonymous, grave report: scoring raises Kota Tarakan to awas and notify pages its coordinator.
    number, n = lapor(bot, SITI, anonymous=True, severity=5, casualties=2)
    bot.press(SITI, f"send:{number[4:]}")
    assert bot.wait_text(SITI, n + 1) == f"Laporan diterima. Nomor laporan: {number}. Terima kasih."
    [r] = reports_with(stack, f"lapor-{number[4:]}")
    assert r["attributes"] == {"channel": "telegram", "report_number": number}  # no pseudonym either
    page = hook.wait_page("kab", "mass_mobilization", "triggered")
    assert f"lapor-{number[4:]}" in orjson.loads(page.body)["report_ids"]

    secrets = (SITI_NAME, str(SITI), SITI_PHONE, SITI_PHONE.lstrip("+"), BOT_TOKEN, SMS_SECRET)
    carried = {"report": orjson.dumps(r).decode(), "page": page.body.decode()}
    carried.update({log.name: log.read_text("utf-8", "replace") for log in Path(stack.logdir).glob("*.log")})
    for where, text in carried.items():
        for s in secrets:
            assert s not in text, f"{s!r} reached {where}"


def test_a_verified_field_report_is_named_in_the_incident_timeline(stack, gw, hook):
    r = sms(gw, SITI_PHONE, "LAPOR bentrok 65.71.01 5 Dua kelompok pemuda bentrok di pasar, dua orang luka")
    number = r.json()["number"]
    page = hook.wait_page("kab", "communal_clash", "triggered")
    incident = orjson.loads(page.body)["incident_id"]
    v = gw.post(f"/v1/reports/fkdm-kaltara/lapor-{number[4:]}/verify", json={"note": "dicek ke lurah"},
                headers={"Authorization": f"Bearer {OP_TOKEN}"})
    assert v.status_code == 202, v.text
    line = f"laporan lapor-{number[4:]} diverifikasi oleh Piket Kesbangpol Kaltara"
    boot = stack.config.kafka.bootstrap_servers
    [u] = asyncio.run(collect(boot, [topics.SCORES_V1], lambda ms: len(ms) == 1,
                              where=lambda m: line in value(m)["reasons"]))
    assert (value(u)["region_code"], value(u)["observed"], value(u)["weighted"]) == ("65.71", 1, 1.0)
    with operator_client(stack, OP_TOKEN) as api:
        deadline = time.monotonic() + 30
        while True:  # notify applies the update after it is on the topic: look until it has
            timeline = api.get(f"/v1/incidents/{incident}").json()["timeline"]
            entries = [e for e in timeline if e["kind"] == "verification"]
            if entries or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert [e["message"] for e in entries] == [line]


def test_a_reporter_over_the_hourly_limit_is_told_so(stack, gw):
    said = [sms(gw, "+6281234500002", f"LAPOR hoaks 65.71.03 1 Pesan berantai palsu tentang surat suara nomor {i}")
            for i in range(21)]
    assert [r.json()["ok"] for r in said] == [True] * 20 + [False]
    assert "batas 20 laporan per jam tercapai" in said[-1].json()["reply"]
