"""Silences: operator-set windows in which matching incidents page nobody, kept in Redis and
audited (who, when; deleting keeps the record)."""

from __future__ import annotations

import uuid

import orjson
import redis.asyncio as aioredis

from shared.times import rfc3339

K_SILENCES = "pantau:silences"
K_AUDIT = "pantau:audit"


async def add(r: aioredis.Redis, matchers: dict, ends_at: float, reason: str, by: str, now: float) -> dict:
    s = {"id": uuid.uuid4().hex[:12], "matchers": matchers, "starts_at": now, "ends_at": ends_at,
         "reason": reason, "created_by": by, "created_at": now}
    async with r.pipeline(transaction=True) as p:
        p.hset(K_SILENCES, s["id"], orjson.dumps(s))
        p.rpush(K_AUDIT, orjson.dumps({"at": rfc3339(now), "by": by, "action": "silence.create",
                                       "silence_id": s["id"], "matchers": matchers, "reason": reason,
                                       "ends_at": rfc3339(ends_at)}))
        await p.execute()
    return s

async def all_of(r: aioredis.Redis) -> list[dict]:
    return [orjson.loads(v) for v in (await r.hgetall(K_SILENCES)).values()]

async def delete(r: aioredis.Redis, silence_id: str, by: str, now: float) -> dict | None:
    raw = await r.hget(K_SILENCES, silence_id)
    if raw is None:
        return None
    s = orjson.loads(raw)
    if s.get("deleted_at"):
        return None
    s["deleted_at"], s["deleted_by"] = now, by
    async with r.pipeline(transaction=True) as p:
        p.hset(K_SILENCES, silence_id, orjson.dumps(s))
        p.rpush(K_AUDIT, orjson.dumps({"at": rfc3339(now), "by": by, "action": "silence.delete",
                                       "silence_id": silence_id}))
        await p.execute()
    return s


def silence_view(s: dict, now: float) -> dict:
    out = dict(s)
    for k in ("starts_at", "ends_at", "created_at", "deleted_at"):
        if out.get(k) is not None:
            out[k] = rfc3339(out[k])
    out["active"] = not s.get("deleted_at") and s["starts_at"] <= now < s["ends_at"]
    return out
