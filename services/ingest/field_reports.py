"""Field reports from enrolled people (Telegram bot, SMS), turned into ReportEvents and taken
through the same validation, scope checks, dedup and acceptance as the HTTP API.

A reporter publishes as their configured source, on the regions both the source and the
reporter cover, unverified. The report number (`LAP-<n>`) is allocated when a report is
started, and its event_id (`lapor-<n>`) is fixed from then on, so confirming twice is a
duplicate, never a second report.

Privacy (UU PDP): a report carries neither the reporter's name nor their Telegram id or phone.
A named report carries the reporter's pseudonym (`attributes.reporter`, the config's `id`),
so an operator can call back to verify; an anonymous one carries nothing of them. The only
trace an anonymous report leaves is one count in its reporter's hourly rate limit. Nothing
here logs a name, a Telegram id or a phone number.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from redis.exceptions import RedisError

from services.ingest.intake import RateLimited, Unavailable
from services.ingest.state import ACCEPTED, dedup_key
from services.ingest.verify_api import send_decision
from shared import metrics
from shared.config import Config
from shared.problems import Refusal
from shared.regions import in_scope, registry
from shared.reporting_config import Reporter
from shared.schemas import validate_obj
from shared.verifications import REJECTED, REPORTER

log = logging.getLogger("pantau.ingest.field")

K_SEQ = "pantau:reporting:seq"
K_RATE = "pantau:reporting:rl:{}:{}"        # reporter id, hour → reports started that hour
K_CANCEL = "pantau:reporting:cancel:{}"     # channel-scoped user key → the last named report
CANCELLED_BY = "pelapor (dibatalkan)"


def number_text(n: int) -> str:
    return f"LAP-{n}"


def event_id_of(n: int) -> str:
    return f"lapor-{n}"


@dataclass
class Draft:
    """A report being put together; JSON-serialisable for the conversation store."""

    number: int
    category: str | None = None
    region_code: str | None = None
    text: str | None = None
    severity: int | None = None
    casualties: int | None = None
    anonymous: bool | None = None

    def dumps(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def loads(cls, raw: bytes) -> "Draft":
        return cls(**orjson.loads(raw))


@dataclass
class Submitted:
    """The outcome for the reporter: `status` accepted | duplicate | rejected, and why."""

    status: str
    number: str
    errors: list[str]


def find_places(query: str, scope: list[str], limit: int = 8) -> list[str]:
    """Region codes within `scope` whose name is `query` (case-insensitive), or starts with
    it when nothing matches whole; a code typed as such is taken as it is. Most specific first."""
    reg = registry()
    q = query.strip()
    if reg.exists(q):
        return [q] if in_scope(q, scope) else []
    folded = " ".join(q.casefold().split())
    if len(folded) < 3:
        return []
    exact, starts = [], []
    for code in _codes_within(tuple(scope)):
        name = (reg.name(code) or "").casefold()
        if name == folded:
            exact.append(code)
        elif name.startswith(folded):
            starts.append(code)
    found = exact or starts
    return sorted(found, key=lambda c: (-c.count("."), c))[:limit]


@lru_cache(maxsize=64)
def _codes_within(scope: tuple[str, ...]) -> tuple[str, ...]:
    """Every kabupaten/kota, kecamatan and desa under the scope's prefixes (once per scope)."""
    reg = registry()
    return tuple(c for level in (2, 3, 4) for c in reg.codes(level) if in_scope(c, scope))


def gps_places(location: Any, scope: list[str]) -> tuple[str | None, list[str]]:
    """Where a location shared in Telegram (`{"latitude", "longitude"}`) lies: its
    kabupaten/kota from the boundaries (None at sea, abroad, or for a malformed location),
    and the kecamatan in it the reporter may report on (their own narrower regions under it
    where their scope is narrower). The boundaries stop at kabupaten/kota, so the bot asks
    which kecamatan, or for a name when there is none to offer."""
    from shared.boundaries import boundaries

    try:
        lat, lon = float(location["latitude"]), float(location["longitude"])
    except (KeyError, TypeError, ValueError):
        return None, []
    kab = boundaries().locate(lat, lon)
    if kab is None:
        return None, []
    if in_scope(kab, scope):
        return kab, registry().children(kab)
    return kab, sorted(c for c in scope if in_scope(c, [kab]))


def place_label(code: str) -> str:
    reg = registry()
    parts = [reg.name(code)]
    if reg.level(code) > 2:
        parts.append(reg.name(reg.kabkota_of(code)))
    return ", ".join(p for p in parts if p) + f" ({code})"


class FieldIntake:
    """Takes a finished draft from an enrolled reporter through the gateway's intake."""

    def __init__(self, gw: Any, config: Config):
        self.gw = gw
        self.config = config
        self.settings = config.reporting
        self.sources = {s.id: s for s in config.sources}
        self.by_telegram = {r.telegram_user_id: r for r in config.reporters if r.telegram_user_id is not None}
        self.by_phone = {r.phone: r for r in config.reporters if r.phone is not None}

    async def new_number(self) -> int:
        return int(await self.gw.redis.incr(K_SEQ))

    def scope(self, reporter: Reporter) -> list[str]:
        source = self.sources[reporter.source]
        return [c for c in reporter.regions if in_scope(c, source.regions)]

    def build(self, reporter: Reporter, d: Draft, channel: str) -> dict[str, Any]:
        from shared.categories import CATEGORY_NAMES

        reg = registry()
        place = reg.name(d.region_code or "") or d.region_code
        body: dict[str, Any] = {
            "event_id": event_id_of(d.number),
            "source": reporter.source,
            "region_code": d.region_code,
            "category": d.category,
            "severity": d.severity,
            "occurred_at": datetime.now(reg.timezone_of(d.region_code or "31")).isoformat(timespec="seconds"),
            "title": f"Laporan warga: {CATEGORY_NAMES['id'].get(d.category or '', d.category)} di {place}"[:200],
            "description": d.text,
            "verified": False,
            "casualties": d.casualties or 0,
            "attributes": {"channel": channel, "report_number": number_text(d.number)},
        }
        if not d.anonymous:
            body["attributes"]["reporter"] = reporter.id
        return body

    async def submit(self, reporter: Reporter, d: Draft, channel: str) -> Submitted:
        done = await self._submit(reporter, d, channel)
        metrics.FIELD_REPORTS.labels(channel, done.status).inc()
        return done

    async def _submit(self, reporter: Reporter, d: Draft, channel: str) -> Submitted:
        number = number_text(d.number)
        body = self.build(reporter, d, channel)
        report, errors = validate_obj(body)
        if report is None:
            return Submitted("rejected", number, [f"{e['field']}: {e['message']}" for e in errors])
        if not in_scope(report.region_code, self.scope(reporter)):
            return Submitted("rejected", number, [f"wilayah {report.region_code} di luar wilayah tugas Anda "
                                                  f"({', '.join(self.scope(reporter))})"])
        try:
            claimed = await self.gw.redis.get(dedup_key(report.source, report.event_id))
            if claimed is not None and (claimed.decode() if isinstance(claimed, bytes) else claimed).startswith(ACCEPTED):
                return Submitted("duplicate", number, [])
            hour = int(time.time() // 3600)
            key = K_RATE.format(reporter.id, hour)
            used = await self.gw.redis.incr(key)
            await self.gw.redis.expire(key, 3700)
        except RedisError:
            return Submitted("rejected", number, ["sistem sedang tidak dapat menerima laporan, coba lagi nanti"])
        if used > self.settings.rate_limit_per_hour:
            return Submitted("rejected", number, [f"batas {self.settings.rate_limit_per_hour} laporan per jam "
                                                  f"tercapai, coba lagi nanti"])
        source = self.sources[reporter.source]
        try:
            (outcome,) = await self.gw.intake.take(source.id, self.gw.rate_limit(source), [report])
        except (RateLimited, Unavailable):
            return Submitted("rejected", number, ["sistem sedang sibuk, kirim ulang sebentar lagi"])
        log.info("field report %s from %s: %s", report.event_id, channel, outcome.status)
        if outcome.status == "accepted":
            metrics.REPORTS_ACCEPTED.labels(source.id, channel).inc()
            metrics.SOURCE_LAST_REPORT.labels(source.id).set(time.time())
        else:
            metrics.REPORTS_DUPLICATE.labels(source.id, channel).inc()
        return Submitted(outcome.status, number, [])

    async def remember_for_cancel(self, who: str, reporter: Reporter, d: Draft) -> None:
        """Keep, for the cancel window only, which report a named reporter may withdraw."""
        if d.anonymous:
            return
        value = orjson.dumps({"source": reporter.source, "event_id": event_id_of(d.number), "n": d.number})
        await self.gw.redis.set(K_CANCEL.format(who), value, ex=self.settings.cancel_minutes * 60)

    async def cancel(self, who: str) -> str | None:
        """Withdraw the caller's last named report if still within the window: a reject
        decision on pantau.verifications.v1. Returns its number, or None when there is none."""
        raw = await self.gw.redis.getdel(K_CANCEL.format(who))
        if raw is None:
            return None
        last = orjson.loads(raw)
        try:
            await send_decision(self.gw, last["source"], last["event_id"], REJECTED, REPORTER, CANCELLED_BY, None)
        except Refusal:
            await self.gw.redis.set(K_CANCEL.format(who), raw, ex=60)  # let them try again shortly
            raise
        return number_text(last["n"])
