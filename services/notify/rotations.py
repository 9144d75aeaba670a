"""Who is on call for a region at a given moment: turns that change hands at a local time
(WIB/WITA/WIT by province), and overrides that win over the turns.

`on_call` is a pure function; `OverrideStore` keeps overrides added at run time in Redis,
beside the ones written in the config.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import orjson
import redis.asyncio as aioredis

from shared.notify_config import Override, Rotation
from shared.regions import registry

PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


def _aware(dt: datetime, tz: timezone) -> datetime:
    """A time without offset is the region's local time."""
    return dt.replace(tzinfo=tz) if dt.tzinfo is None or dt.utcoffset() is None else dt


def first_handover(rotation: Rotation) -> datetime:
    tz = registry().timezone_of(rotation.region)
    return datetime.combine(rotation.start, rotation.handover_time, tzinfo=tz)


def on_call(rotation: Rotation, at: datetime, extra_overrides: list[Override] | tuple[Override, ...] = ()) -> str:
    """The contact id on call in `rotation` at `at` (an aware datetime).

    Members take turns of one day or one week, each turn starting at `handover_at` local
    time, member 0 from `start`; before `start` the turns simply run backwards. An override
    covering `at` wins; among several, the one listed (or added) last wins."""
    if at.tzinfo is None:
        raise ValueError("`at` must carry a time zone")
    tz = registry().timezone_of(rotation.region)
    for o in reversed([*rotation.overrides, *extra_overrides]):
        if _aware(o.start, tz) <= at < _aware(o.end, tz):
            return o.contact
    turns = (at - first_handover(rotation)) // PERIODS[rotation.handover]
    return rotation.members[turns % len(rotation.members)]


def next_handover(rotation: Rotation, at: datetime) -> datetime:
    """When the turn running at `at` ends (overrides aside)."""
    first = first_handover(rotation)
    period = PERIODS[rotation.handover]
    return first + ((at - first) // period + 1) * period


class OverrideStore:
    """Overrides added at run time (by operators through the API), kept in Redis so that
    every notify process and every restart sees them."""

    KEY = "pantau:rotation:{}:overrides"

    def __init__(self, r: aioredis.Redis):
        self.r = r

    async def add(self, region: str, contact: str, start: datetime, end: datetime, by: str,
                  reason: str | None = None) -> dict:
        """Record an override (who added it and when, for the audit)."""
        o = Override(contact=contact, start=start, end=end)
        oid = uuid.uuid4().hex[:12]
        doc = {"id": oid, "region": region, "contact": o.contact, "start": o.start.isoformat(),
               "end": o.end.isoformat(), "reason": reason, "created_by": by,
               "created_at": datetime.now(timezone.utc).isoformat()}
        await self.r.hset(self.KEY.format(region), oid, orjson.dumps(doc))
        return doc

    async def list(self, region: str) -> list[dict]:
        raw = await self.r.hgetall(self.KEY.format(region))
        return sorted((orjson.loads(v) for v in raw.values()), key=lambda d: d["created_at"])

    async def overrides(self, region: str, now: datetime) -> list[Override]:
        """The run-time overrides of a region still in force or to come, oldest first."""
        out = []
        for d in await self.list(region):
            o = Override(contact=d["contact"], start=datetime.fromisoformat(d["start"]),
                         end=datetime.fromisoformat(d["end"]))
            if _aware(o.end, registry().timezone_of(region)) > now:
                out.append(o)
        return out

    async def remove(self, region: str, oid: str) -> bool:
        return bool(await self.r.hdel(self.KEY.format(region), oid))
