"""The reporters' Telegram bot: `/lapor` walks an enrolled reporter through a report in Bahasa
Indonesia, `/batal` withdraws their last report within `reporting.cancel_minutes`.

    getUpdates (long poll, one gateway at a time: a Redis lease) ─▶ Bot.handle ─▶ FieldIntake
          ▲                                                            │
          └──────────── offset in Redis, advanced after each update ◀──┘

The conversation: category (buttons) → place (a name or code searched in the registry within
the reporter's regions; several matches become buttons; a shared GPS location is placed in
its kabupaten/kota by the boundaries and its kecamatan within the reporter's regions become
buttons, and one in no kabupaten/kota or outside their regions is asked again) → what happened → severity (buttons) →
casualties → anonymous or not (buttons) → a summary with *Kirim* / *Batal*. Each step is kept
in Redis under the reporter's Telegram id for `conversation_minutes` and deleted when the
report is sent. The report number is fixed when /lapor starts, so *Kirim* pressed twice (or an
update applied again after a restart) is a duplicate, never a second report.

Only private chats with enrolled reporters (`reporters[].telegram_user_id`) are served;
anyone else is told they are not enrolled, and nothing of them is kept or logged.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import httpx
import orjson

from services.ingest.field_reports import Draft, FieldIntake, find_places, gps_places, number_text, place_label
from shared.lease import Lease
from shared import metrics
from shared.categories import CATEGORIES
from shared.config import Config
from shared.problems import Refusal
from shared.reporting_config import Reporter, TelegramIntake
from shared.retry import backoff_s

log = logging.getLogger("pantau.ingest.telegram")
# httpx logs every request's URL at INFO, and the Bot API carries the bot's token in its URL.
logging.getLogger("httpx").setLevel(logging.WARNING)

K_CONV = "pantau:reporting:tg:conv:{}"
K_OFFSET = "pantau:reporting:tg:offset"
K_LEASE = "pantau:reporting:tg:poller"

SEVERITY = {1: "1 · informasi", 2: "2 · ringan", 3: "3 · sedang", 4: "4 · berat",
            5: "5 · korban jiwa / kekerasan besar"}

T = {
    "stranger": "Maaf, akun Telegram Anda belum terdaftar sebagai pelapor Pantau. Hubungi Bakesbangpol "
                "untuk pendaftaran.",
    "help": "Ketik /lapor untuk membuat laporan, /batal untuk membatalkan.",
    "category": "Laporan {number}. Pilih kategori kejadian:",
    "place": "Di mana kejadiannya? Ketik nama desa/kelurahan atau kecamatan (atau kode wilayah).",
    "gps": "Lokasi GPS tidak berada di kabupaten/kota mana pun yang dikenal. Ketik nama desa/kelurahan atau "
           "kecamatan.",
    "gps_outside": "Lokasi GPS berada di {place}, di luar wilayah tugas Anda. Ketik nama desa/kelurahan atau "
                   "kecamatan di wilayah tugas Anda.",
    "gps_choose": "Lokasi GPS berada di {place}. Pilih kecamatannya, atau ketik nama desa/kelurahan:",
    "not_found": "Tempat \u201c{query}\u201d tidak ditemukan di wilayah tugas Anda. Ketik lagi nama desa/kelurahan "
                 "atau kecamatan, atau kode wilayah (mis. 65.71.02).",
    "choose_place": "Ada beberapa tempat bernama \u201c{query}\u201d. Pilih salah satu:",
    "text": "Tempat: {place}.\nApa yang terjadi? Tulis singkat (siapa, berapa orang, apa yang dilakukan).",
    "text_short": "Tulis minimal 10 huruf tentang apa yang terjadi.",
    "severity": "Seberapa parah?",
    "casualties": "Berapa korban (luka atau meninggal)? Ketik angka, 0 jika tidak ada.",
    "casualties_bad": "Ketik jumlah korban sebagai angka, 0 jika tidak ada.",
    "anonymous": "Kirim sebagai laporan anonim? (Laporan anonim tidak dapat dibatalkan dan tidak dapat "
                 "dikonfirmasi ulang ke Anda.)",
    "summary": "Ringkasan laporan {number}:\nKategori: {category}\nTempat: {place}\nKejadian: {text}\n"
               "Keparahan: {severity}\nKorban: {casualties}\nAnonim: {anonymous}\n\nKirim laporan ini?",
    "buttons": "Silakan pilih salah satu tombol di atas.",
    "sent": "Laporan diterima. Nomor laporan: {number}. Terima kasih.",
    "sent_named": "Laporan diterima. Nomor laporan: {number}. Terima kasih. Ketik /batal dalam {minutes} menit "
                  "jika ingin membatalkannya.",
    "already": "Laporan {number} sudah diterima sebelumnya.",
    "refused": "Laporan {number} tidak dapat diterima: {why}",
    "dropped": "Laporan dibatalkan sebelum dikirim.",
    "cancelled": "Laporan {number} dibatalkan.",
    "nothing_to_cancel": "Tidak ada laporan yang dapat dibatalkan (hanya laporan bernama, dalam {minutes} menit "
                         "setelah dikirim).",
    "busy": "Sistem sedang sibuk; coba lagi sebentar lagi.",
}


def _keyboard(rows: list[list[tuple[str, str]]]) -> dict[str, Any]:
    return {"inline_keyboard": [[{"text": t, "callback_data": d} for t, d in row] for row in rows]}


def category_keyboard() -> dict[str, Any]:
    from shared.categories import CATEGORY_NAMES

    names = CATEGORY_NAMES["id"]
    buttons = [(names[c], f"cat:{c}") for c in CATEGORIES]
    return _keyboard([buttons[i:i + 2] for i in range(0, len(buttons), 2)])


class BotApi:
    """The few Bot API methods the intake uses, over one HTTP client."""

    def __init__(self, cfg: TelegramIntake):
        self.cfg = cfg
        self.client = httpx.AsyncClient(timeout=cfg.timeout_s)
        self.base = f"{cfg.base_url}/bot{cfg.bot_token.get_secret_value()}"

    async def call(self, method: str, payload: dict[str, Any], timeout_s: float | None = None) -> Any:
        resp = await self.client.post(f"{self.base}/{method}", json=payload, timeout=timeout_s or self.cfg.timeout_s)
        body = resp.json()
        if not (isinstance(body, dict) and body.get("ok") is True):
            raise httpx.HTTPStatusError(f"{method} answered {resp.status_code}", request=resp.request, response=resp)
        return body.get("result")

    async def say(self, chat_id: int, text: str, markup: dict[str, Any] | None = None) -> None:
        payload: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if markup is not None:
            payload["reply_markup"] = markup
        await self.call("sendMessage", payload)


class Bot:
    """One update at a time: who sent it, where their conversation stands, what to answer."""

    def __init__(self, field: FieldIntake, api: BotApi, redis: Any, conversation_s: int):
        self.field = field
        self.api = api
        self.r = redis
        self.conversation_s = conversation_s

    async def handle(self, update: dict[str, Any]) -> None:
        if isinstance(update.get("callback_query"), dict):
            q = update["callback_query"]
            chat = ((q.get("message") or {}).get("chat") or {})
            await self._safe(self.api.call("answerCallbackQuery", {"callback_query_id": q.get("id")}))
            await self._on_event(q.get("from") or {}, chat, button=str(q.get("data") or ""))
        elif isinstance(update.get("message"), dict):
            m = update["message"]
            await self._on_event(m.get("from") or {}, m.get("chat") or {}, text=m.get("text"),
                                 located=m.get("location", False))

    @staticmethod
    async def _safe(call: Any) -> None:
        try:
            await call
        except (httpx.HTTPError, ValueError):
            pass  # a lost button acknowledgement only leaves a spinner on the reporter's screen

    async def _on_event(self, sender: dict, chat: dict, text: Any = None, button: str = "", located: Any = False) -> None:
        if chat.get("type") != "private" or not isinstance(chat.get("id"), int) or sender.get("is_bot"):
            return
        chat_id = chat["id"]
        reporter = self.field.by_telegram.get(sender.get("id"))
        if reporter is None:
            log.info("telegram: a message from someone not enrolled, refused")
            metrics.FIELD_REPORTS.labels("telegram", "stranger").inc()
            await self.api.say(chat_id, T["stranger"])
            return
        who = f"tg:{sender['id']}"
        word = text.strip().split()[0].split("@")[0].casefold() if isinstance(text, str) and text.strip() else ""
        if word in ("/lapor", "/start"):
            await self._start(chat_id, who)
            return
        if word == "/batal":
            await self._cancel(chat_id, who)
            return
        step, draft = await self._load(who)
        if draft is None:
            if button.startswith("send:"):
                await self.api.say(chat_id, T["already"].format(number=number_text(int(button[5:]))))
            else:
                await self.api.say(chat_id, T["help"])
            return
        await self._step(chat_id, who, reporter, step, draft, text if isinstance(text, str) else None, button, located)

    async def _start(self, chat_id: int, who: str) -> None:
        draft = Draft(number=await self.field.new_number())
        await self._save(who, "category", draft)
        await self.api.say(chat_id, T["category"].format(number=number_text(draft.number)), category_keyboard())

    async def _cancel(self, chat_id: int, who: str) -> None:
        step, draft = await self._load(who)
        if draft is not None:
            await self.r.delete(K_CONV.format(who))
            await self.api.say(chat_id, T["dropped"])
            return
        try:
            number = await self.field.cancel(who)
        except Refusal:
            await self.api.say(chat_id, T["busy"])
            return
        minutes = self.field.settings.cancel_minutes
        await self.api.say(chat_id, T["cancelled"].format(number=number) if number
                           else T["nothing_to_cancel"].format(minutes=minutes))

    async def _step(self, chat_id: int, who: str, reporter: Reporter, step: str, d: Draft, text: str | None,
                    button: str, located: Any) -> None:
        say = self.api.say
        if step == "category" and button.startswith("cat:") and button[4:] in CATEGORIES:
            d.category = button[4:]
            await self._save(who, "place", d)
            await say(chat_id, T["place"])
        elif step == "place" and located is not False:
            kab, choices = gps_places(located, self.field.scope(reporter))
            if kab is None:
                await say(chat_id, T["gps"])
            elif not choices:
                await say(chat_id, T["gps_outside"].format(place=place_label(kab)))
            else:
                await say(chat_id, T["gps_choose"].format(place=place_label(kab)),
                          _keyboard([[(place_label(c), f"place:{c}")] for c in choices]))
        elif step == "place" and button.startswith("place:") and button[6:] in find_places(button[6:], self.field.scope(reporter)):
            await self._placed(chat_id, who, d, button[6:])
        elif step == "place" and text:
            found = find_places(text, self.field.scope(reporter))
            if not found:
                await say(chat_id, T["not_found"].format(query=text.strip()[:60]))
            elif len(found) == 1:
                await self._placed(chat_id, who, d, found[0])
            else:
                await say(chat_id, T["choose_place"].format(query=text.strip()[:60]),
                          _keyboard([[(place_label(c), f"place:{c}")] for c in found]))
        elif step == "text" and text:
            if len(text.strip()) < 10:
                await say(chat_id, T["text_short"])
                return
            d.text = text.strip()[:2000]
            await self._save(who, "severity", d)
            await say(chat_id, T["severity"], _keyboard([[(SEVERITY[n], f"sev:{n}")] for n in SEVERITY]))
        elif step == "severity" and button in {f"sev:{n}" for n in SEVERITY}:
            d.severity = int(button[4:])
            await self._save(who, "casualties", d)
            await say(chat_id, T["casualties"])
        elif step == "casualties" and text:
            if not text.strip().isdigit() or int(text.strip()) > 100_000:
                await say(chat_id, T["casualties_bad"])
                return
            d.casualties = int(text.strip())
            await self._save(who, "anonymous", d)
            await say(chat_id, T["anonymous"], _keyboard([[("Ya, anonim", "anon:1"), ("Tidak", "anon:0")]]))
        elif step == "anonymous" and button in ("anon:1", "anon:0"):
            d.anonymous = button == "anon:1"
            await self._save(who, "confirm", d)
            await say(chat_id, self.summary(d), _keyboard([[("Kirim", f"send:{d.number}"), ("Batal", f"drop:{d.number}")]]))
        elif step == "confirm" and button == f"send:{d.number}":
            await self._send(chat_id, who, reporter, d)
        elif button == f"drop:{d.number}":
            await self.r.delete(K_CONV.format(who))
            await say(chat_id, T["dropped"])
        elif button.startswith("send:"):
            await say(chat_id, T["already"].format(number=number_text(int(button[5:]))))
        else:
            await say(chat_id, T["buttons"] if step in ("category", "severity", "anonymous", "confirm")
                      else {"place": T["place"], "text": T["text_short"], "casualties": T["casualties_bad"]}[step])

    async def _placed(self, chat_id: int, who: str, d: Draft, code: str) -> None:
        d.region_code = code
        await self._save(who, "text", d)
        await self.api.say(chat_id, T["text"].format(place=place_label(code)))

    def summary(self, d: Draft) -> str:
        from shared.categories import CATEGORY_NAMES

        return T["summary"].format(number=number_text(d.number), category=CATEGORY_NAMES["id"][d.category],
                                   place=place_label(d.region_code or ""), text=d.text,
                                   severity=SEVERITY[d.severity or 1], casualties=d.casualties,
                                   anonymous="ya" if d.anonymous else "tidak")

    async def _send(self, chat_id: int, who: str, reporter: Reporter, d: Draft) -> None:
        done = await self.field.submit(reporter, d, "telegram")
        if done.status == "rejected":
            await self.api.say(chat_id, T["refused"].format(number=done.number, why="; ".join(done.errors)))
            return
        await self.r.delete(K_CONV.format(who))
        if done.status == "duplicate":
            await self.api.say(chat_id, T["already"].format(number=done.number))
            return
        await self.field.remember_for_cancel(who, reporter, d)
        minutes = self.field.settings.cancel_minutes
        await self.api.say(chat_id, T["sent"].format(number=done.number) if d.anonymous
                           else T["sent_named"].format(number=done.number, minutes=minutes))

    async def _load(self, who: str) -> tuple[str, Draft | None]:
        raw = await self.r.get(K_CONV.format(who))
        if raw is None:
            return "", None
        doc = orjson.loads(raw)
        return doc["step"], Draft(**doc["draft"])

    async def _save(self, who: str, step: str, d: Draft) -> None:
        await self.r.set(K_CONV.format(who), orjson.dumps({"step": step, "draft": d.__dict__}), ex=self.conversation_s)


class Poller:
    """getUpdates in a loop while this gateway holds the lease; the offset moves past an update
    only after it was handled, so a restart neither loses nor skips a message."""

    def __init__(self, bot: Bot, api: BotApi, redis: Any, cfg: TelegramIntake):
        self.bot, self.api, self.r, self.cfg = bot, api, redis, cfg
        self.lease = Lease(redis, K_LEASE, uuid.uuid4().hex, cfg.poll_timeout_s + cfg.timeout_s + 15)

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                wait = await self.round()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 — Telegram or Redis away must not end the gateway
                failures += 1
                wait = backoff_s(failures, 1.0, 60.0)
                log.warning("telegram intake: %s; retrying in %.0f s", type(e).__name__, wait)
            if wait:
                await asyncio.sleep(wait)

    async def round(self) -> float:
        if not await self.lease.hold():
            return 5.0
        raw = await self.r.get(K_OFFSET)
        payload: dict[str, Any] = {"timeout": self.cfg.poll_timeout_s, "allowed_updates": ["message", "callback_query"]}
        if raw is not None:
            payload["offset"] = int(raw)
        updates = await self.api.call("getUpdates", payload, self.cfg.poll_timeout_s + self.cfg.timeout_s)
        for update in updates or []:
            if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                continue
            try:
                await self.bot.handle(update)
            except httpx.HTTPError as e:
                log.warning("telegram intake: an answer failed (%s)", type(e).__name__)
            except (KeyError, TypeError, ValueError) as e:  # a malformed update: skipped, not retried forever
                log.error("telegram intake: update %d skipped: %s", update["update_id"], type(e).__name__)
            await self.r.set(K_OFFSET, update["update_id"] + 1)
        return 0.0


def start(gw: Any, config: Config) -> "asyncio.Task[None] | None":
    """Start the bot in the gateway's event loop when `reporting.telegram` is configured."""
    cfg = config.reporting.telegram
    if cfg is None:
        return None
    api = BotApi(cfg)
    bot = Bot(FieldIntake(gw, config), api, gw.redis, config.reporting.conversation_minutes * 60)
    return asyncio.create_task(Poller(bot, api, gw.redis, cfg).run(), name="telegram-intake")
