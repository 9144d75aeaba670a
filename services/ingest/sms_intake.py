"""Field reports by SMS: the SMS gateway (the HTTP gateway family notify sends through) posts
each inbound message to `POST /v1/inbound/sms` and relays the `reply` of the answer to the
sender.

    LAPOR [ANONIM] <kategori> <kode wilayah> <keparahan 1-5> <teks>
    BATAL

The answer names the report number, or exactly which part was wrong. Only enrolled numbers
(`reporters[].phone`) may report; any other number gets 403 and no reply text, and nothing of
it is kept or logged. The gateway authenticates with `reporting.sms.secret`, as
`Authorization: Bearer <secret>` or `?secret=` (the gateway's access log is off). A gateway
that posts the same message again within 10 minutes gets the same report number, and the
report is a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.ingest.field_reports import Draft, FieldIntake, number_text
from shared import metrics, problems
from shared.categories import CATEGORIES
from shared.channels_config import normalise_phone
from shared.problems import Refusal
from shared.regions import in_scope, registry

log = logging.getLogger("pantau.ingest.sms")

K_SEEN = "pantau:reporting:sms:seen:{}"  # sha256(phone, text) → report number, 10 minutes
SEEN_S = 600
FORMAT = "Format: LAPOR <kategori> <kode wilayah> <keparahan 1-5> <teks>"

# Short words a reporter can type on a phone keypad, besides the category names themselves.
WORDS = {
    "pilkada": "election_dispute", "sengketa": "election_dispute", "psu": "election_dispute",
    "massa": "mass_mobilization", "demo": "mass_mobilization", "unjukrasa": "mass_mobilization",
    "sara": "sara_incitement", "hoaks": "hoax_disinformation", "hoax": "hoax_disinformation",
    "bentrok": "communal_clash", "agraria": "land_resource_conflict", "lahan": "land_resource_conflict",
    "politik": "political_violence", "kekerasan": "political_violence", "keamanan": "security_threat",
    "teror": "security_threat", "lain": "other", "lainnya": "other",
}


def parse_sms(text: str, scope: list[str]) -> tuple[dict[str, Any] | None, list[str]]:
    """The parts of a LAPOR message, or every problem with it, in the reporter's words."""
    words = text.split()
    if not words or words[0].casefold() != "lapor":
        return None, [f"pesan harus diawali LAPOR. {FORMAT}"]
    anonymous = len(words) > 1 and words[1].casefold() == "anonim"
    rest = words[2:] if anonymous else words[1:]
    if len(rest) < 4:
        return None, [f"bagian pesan kurang. {FORMAT}"]
    word, code, severity, body = rest[0].casefold(), rest[1], rest[2], " ".join(rest[3:])
    errors = []
    category = word if word in CATEGORIES else WORDS.get(word)
    if category is None:
        errors.append(f"kategori '{rest[0]}' tidak dikenal (pakai: PILKADA, MASSA, SARA, HOAKS, BENTROK, AGRARIA, "
                      f"POLITIK, KEAMANAN, LAIN)")
    if not registry().exists(code):
        errors.append(f"kode wilayah '{code}' tidak ada di registri Kemendagri (contoh: 65.71.02)")
    elif not in_scope(code, scope):
        errors.append(f"kode wilayah {code} di luar wilayah tugas Anda ({', '.join(scope)})")
    if severity not in ("1", "2", "3", "4", "5"):
        errors.append(f"keparahan '{severity}' harus angka 1 sampai 5")
    if len(body) < 10:
        errors.append("teks kejadian terlalu pendek (minimal 10 huruf)")
    if errors:
        return None, errors
    return {"category": category, "region_code": code, "severity": int(severity), "text": body[:2000],
            "anonymous": anonymous}, []


def router(gw: Any) -> APIRouter:
    api = APIRouter()
    field = FieldIntake(gw, gw.config)

    async def _form(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > 16 * 1024:
            raise Refusal(413, "too_large", "body is over 16384 bytes")
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        try:
            if ctype == "application/json":
                doc = orjson.loads(raw)
                return doc if isinstance(doc, dict) else {}
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            raise Refusal(422, "invalid", "unreadable body", errors=[
                {"field": "(body)", "message": "send JSON or a form"}]) from None

    @api.post("/v1/inbound/sms", responses=problems.responses({
        401: "missing or wrong gateway secret", 403: "the sender's number is not enrolled",
        404: "SMS reporting is not configured", 422: "the gateway's request lacks the sender or the text"}))
    async def inbound_sms(request: Request) -> Response:
        """An inbound SMS from the gateway; `reply` is the text to send back to its sender."""
        cfg = gw.config.reporting.sms
        if cfg is None:
            raise Refusal(404, "not_found", "SMS reporting is not configured (reporting.sms)")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else request.query_params.get("secret", "")
        if not hmac.compare_digest(given.encode(), cfg.secret.get_secret_value().encode()):
            raise Refusal(401, "unauthorized", "missing or wrong gateway secret", {"WWW-Authenticate": "Bearer"})
        form = await _form(request)
        sender, text = form.get(cfg.from_field), form.get(cfg.text_field)
        missing = [f for f, v in ((cfg.from_field, sender), (cfg.text_field, text)) if not isinstance(v, str)]
        if missing:
            raise Refusal(422, "invalid", "the gateway's request lacks a field", errors=[
                {"field": f, "message": "required (a string)"} for f in missing])
        reporter = field.by_phone.get(_e164(sender))
        if reporter is None:
            log.info("sms: a message from a number not enrolled, refused")
            metrics.FIELD_REPORTS.labels("sms", "stranger").inc()
            raise Refusal(403, "forbidden", "this number is not enrolled as a reporter")
        if text.strip().casefold() == "batal":
            try:
                number = await field.cancel(f"sms:{reporter.id}")
            except Refusal:
                return _reply("Sistem sedang sibuk; kirim BATAL lagi sebentar lagi.")
            return _reply(f"Laporan {number} dibatalkan." if number else
                          f"Tidak ada laporan yang dapat dibatalkan (dalam {field.settings.cancel_minutes} menit).")
        parts, errors = parse_sms(text, field.scope(reporter))
        if parts is None:
            return _reply("Laporan tidak diterima: " + "; ".join(errors), ok=False)
        seen = K_SEEN.format(hashlib.sha256(f"{reporter.id}\x1f{text.strip()}".encode()).hexdigest())
        n = await gw.redis.get(seen)
        if n is None:
            n = await field.new_number()
            await gw.redis.set(seen, n, ex=SEEN_S)
        d = Draft(number=int(n), casualties=0, **parts)
        done = await field.submit(reporter, d, "sms")
        if done.status == "rejected":
            return _reply(f"Laporan {done.number} tidak diterima: " + "; ".join(done.errors), ok=False)
        if done.status == "accepted":
            await field.remember_for_cancel(f"sms:{reporter.id}", reporter, d)
        return _reply(f"Laporan diterima. Nomor laporan: {number_text(d.number)}." +
                      ("" if d.anonymous else f" Kirim BATAL dalam {field.settings.cancel_minutes} menit untuk "
                                              f"membatalkan."), number=number_text(d.number), status=done.status)

    return api


def _e164(sender: str) -> str | None:
    """The sender as the config spells numbers (gateways send 62812..., +62812... or 0812...)."""
    try:
        return normalise_phone(sender if sender.strip().startswith(("+", "0")) else "+" + sender.strip())
    except ValueError:
        return None


def _reply(text: str, ok: bool = True, **extra: Any) -> Response:
    return Response(orjson.dumps({"reply": text, "ok": ok, **extra}), media_type="application/json")
