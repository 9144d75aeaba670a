"""The watchdog: a source that falls silent is noticed, not mistaken for calm.

Where "last heard" comes from: the notify service reads `pantau.reports.v1` itself, keeping
only `source` and `received_at` of each report (the newest per source goes to a Redis hash with
a max-only Lua write). The alternatives do not work: score updates
carry report ids but not sources (scoring aggregates sources away), and the ingest metric
`pantau_source_last_report_timestamp_seconds` is per process and reachable only over HTTP,
while services talk to each other only through Kafka. Reading the topic is cheap (an aiokafka
consumer decodes ~200,000 reports/s on these machines) and sees raw and HTTP reports alike.

Where it is in the topic lives in Redis, not in a consumer group: the same Lua call that
raises the last-heard times raises the stored position of each partition (max-only too), so
a restart resumes exactly after what is already counted, and nothing is ever committed
elsewhere that could disagree. A consumer group would add nothing: the writes are max-only,
so notify processes need not split the topic (each reads all of it), and a group that nobody
reads from (no source has `silent_after_minutes`) only showed up on the broker as lag that
grew for ever. Its lag is `pantau_consumer_lag_messages` with `group` =
`notify.watchdog_group`.

A configured source with `silent_after_minutes` that has sent nothing for that long (counted
from the watchdog's first start for a source never heard from) raises an incident of its own,
kind `source_silent`, paged to the operators (or by `notify.watchdog_policy`); when the source
speaks again the incident resolves itself. The check waits until the watchdog has caught up
with the topic, so a restart after downtime does not raise false alarms from old positions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Callable, Sequence

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import metrics, topics
from shared.kafka import CONSUMER_DEFAULTS, report_lag, stop_quietly
from shared.notify_config import Policy, Step
from services.notify.incident_metrics import count_change
from services.notify.store import IncidentStore
from services.notify.transitions import open_source_incident, resolve
from services.notify.incident import source_key

log = logging.getLogger("pantau.notify.watchdog")

K_LAST_SEEN = "pantau:watchdog:last_seen"
K_STARTED = "pantau:watchdog:started"
K_POSITIONS = "pantau:watchdog:positions"  # partition of reports.v1 → next offset to read

# KEYS: last seen, positions. ARGV: n, then n source/time pairs, then partition/offset pairs.
# Both max-only: replaying a batch, or another notify process reading the same one, is harmless.
_MAX = """
local function raise(key, field, value)
  local cur = tonumber(redis.call('HGET', key, field) or '-1')
  if tonumber(value) > cur then redis.call('HSET', key, field, value) end
end
local n = tonumber(ARGV[1])
for i = 2, 2 * n, 2 do raise(KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 2 * n + 2, #ARGV, 2 do raise(KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""


def builtin_policy(reminder_minutes: float) -> Policy:
    """Source-silence incidents without a configured policy: operators, reminded while silent."""
    return Policy(id="_watchdog", steps=[Step(notify=["operators"], wait_minutes=reminder_minutes, repeat=9)])


def silent_sources(sources: Sequence[tuple[str, float]], last_seen: dict[str, float], started: float,
                   now: float) -> dict[str, float | None]:
    """Sources (id, silent_after_s) silent for longer than allowed → their last report time
    (None when never heard from). Pure."""
    out: dict[str, float | None] = {}
    for sid, after_s in sources:
        last = last_seen.get(sid)
        if now - max(last or 0.0, started) > after_s:
            out[sid] = last
    return out


def _received(value: bytes | None) -> tuple[str, float] | None:
    try:
        d = orjson.loads(value or b"")
        at = datetime.fromisoformat(str(d["received_at"]).replace("z", "Z")).timestamp()
        return str(d["source"]), at
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


class Watchdog:
    """Tails `pantau.reports.v1` for last-heard times and checks sources periodically."""

    def __init__(self, r: aioredis.Redis, store: IncidentStore, bootstrap: str, group: str,
                 sources: Sequence[tuple[str, float, str]], policy: Policy, check_s: float, language: str = "id",
                 clock: Callable[[], float] = time.time, wake: Callable[[], None] = lambda: None):
        self.r = r
        self.store = store
        self.bootstrap = bootstrap
        self.group = group
        self.sources = [(sid, after) for sid, after, _ in sources]
        self.region_of = {sid: region for sid, _, region in sources}
        self.policy = policy
        self.check_s = check_s
        self.language = language
        self.clock = clock
        self.wake = wake
        self.caught_up = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self._max = r.register_script(_MAX)

    async def start(self) -> None:
        await self.r.set(K_STARTED, repr(self.clock()), nx=True)
        if not self.sources:
            self.caught_up.set()

    async def stop(self) -> None:
        await stop_quietly(self.consumer)

    async def run(self, stop: asyncio.Event) -> None:
        if not self.sources:
            return
        await asyncio.gather(self._tail(stop), self._check_loop(stop))

    async def _tail(self, stop: asyncio.Event) -> None:
        # `group` is only the label of the lag metric: no group_id, positions are in Redis.
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, **CONSUMER_DEFAULTS)
        await self.consumer.start()
        await self._assign(stop)
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=500, max_records=5000)
            if not batches:
                self.caught_up.set()
                await report_lag(self.consumer, self.group)
                continue
            newest: dict[str, float] = {}
            for msgs in batches.values():
                for m in msgs:
                    got = _received(m.value)
                    if got is not None and got[1] > newest.get(got[0], 0.0):
                        newest[got[0]] = got[1]
            args: list[str] = [str(len(newest))]
            for s, at in newest.items():
                args += [s, repr(at)]
            for tp, msgs in batches.items():
                args += [str(tp.partition), str(msgs[-1].offset + 1)]
            await self._max(keys=[K_LAST_SEEN, K_POSITIONS], args=args)
            await report_lag(self.consumer, self.group)

    async def _assign(self, stop: asyncio.Event) -> None:
        """Every partition of reports.v1, each from its position in Redis (from the start of
        the topic when there is none yet)."""
        assert self.consumer is not None
        while not stop.is_set():
            await self.consumer.topics()  # refreshes the metadata
            parts = self.consumer.partitions_for_topic(topics.REPORTS_V1)
            if parts:
                break
            await asyncio.sleep(1.0)  # the topic is not there yet
        else:
            return
        tps = [TopicPartition(topics.REPORTS_V1, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        stored = {int(k): int(v) for k, v in (await self.r.hgetall(K_POSITIONS)).items()}
        for tp in tps:
            if tp.partition in stored:
                self.consumer.seek(tp, stored[tp.partition])
            else:
                await self.consumer.seek_to_beginning(tp)

    async def _check_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.caught_up.is_set():
                try:
                    await self.check()
                except Exception:
                    log.exception("watchdog check failed; retrying")
            try:
                await asyncio.wait_for(stop.wait(), self.check_s)
            except asyncio.TimeoutError:
                pass

    async def last_seen(self) -> dict[str, float]:
        raw = await self.r.hgetall(K_LAST_SEEN)
        return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}

    async def check(self) -> None:
        now = self.clock()
        started = float(await self.r.get(K_STARTED) or now)
        seen = await self.last_seen()
        silent = silent_sources(self.sources, seen, started, now)
        metrics.SILENT_SOURCES.set(len(silent))
        after = dict(self.sources)
        for sid, _ in self.sources:
            key = source_key(sid)
            if sid in silent:
                def on_new(_closed: dict | None, sid: str = sid):
                    from services.notify.incident import new_incident_id

                    return open_source_incident(new_incident_id(f"source.{sid}", "other", now), sid,
                                                self.region_of[sid], silent[sid], after[sid], self.policy, now,
                                                self.language)

                _, change = await self.store.upsert(key, on_new, lambda inc: None)
                if change is not None:
                    log.warning("source %s is silent; incident %s opened", sid, change.incident.id)
                    count_change(change)
                    self.wake()
            else:
                oid = await self.store.open_id(key)
                if oid is None:
                    continue
                last = seen.get(sid, 0.0)

                def heard(inc, last: float = last, sid: str = sid):
                    if inc.status == "resolved" or last <= inc.opened_at:
                        return None
                    return resolve(inc, "pantau", now, how="auto", note=f"source {sid} is sending reports again")

                _, change = await self.store.mutate(oid, heard)
                if change is not None:
                    count_change(change)
                    self.wake()
