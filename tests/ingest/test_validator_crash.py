"""Exactly-once accounting of the raw-topic validator across kill -9.

A stream of several thousand raw messages (mostly good, some repeats of earlier reports,
some bad) goes through three validator processes: the first and the second are killed
while they are writing output, the third finishes. Afterwards every raw message is
accounted for exactly once: on `pantau.reports.v1` (by ingest_id `raw-p-o`), on the DLQ (by
partition/offset), or, for a repeat, nowhere.

A last test sets up what a validator killed between writing a report and marking it accepted
leaves behind, and checks that a repeat of that report is recognised without waiting.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.ingest.state import PENDING, dedup_key
from shared import topics
from shared.schemas import partition_key, validate_obj
from tests.ingest.test_validator import outputs, produce_raw, read_topics, wait_processed
from tests.utils import auth, report, value

PARTITIONS = 4
REGIONS = ["65.71.02", "65.71", "65.01.01", "65.02", "65.03.05", "65.04", "65"]


@dataclass
class Planned:
    """One raw message and what must become of it."""

    value: bytes | None
    partition: int
    expect: str  # "v1", "duplicate" or a DLQ reason
    event_id: str | None = None


@dataclass
class Stream:
    """Builds the raw stream; repeats always follow their original on the same partition."""

    rng: random.Random
    run: str
    accepted: dict[int, list[dict]] = field(default_factory=lambda: {p: [] for p in range(PARTITIONS)})
    n: int = 0

    def next(self, http_accepted: list[dict]) -> Planned:
        self.n += 1
        p = self.rng.randrange(PARTITIONS)
        roll = self.rng.random()
        if roll < 0.10 and self.accepted[p]:
            orig = self.rng.choice(self.accepted[p])
            again = orig if self.rng.random() < 0.5 else {**orig, "severity": 5, "title": "Laporan ulang"}
            return Planned(orjson.dumps(again), p, "duplicate")
        if roll < 0.12 and http_accepted:
            return Planned(orjson.dumps(self.rng.choice(http_accepted)), p, "duplicate")
        if roll < 0.16:
            return Planned(orjson.dumps(report(severity="3"))[:-3], p, "invalid_json")
        if roll < 0.19:
            return Planned(orjson.dumps(report(severity=self.rng.choice(["3", True, 0, 6, 2.5]))), p, "invalid")
        if roll < 0.21:
            return Planned(orjson.dumps(report(region_code="65.99.01")), p, "unknown_region")
        if roll < 0.22:
            return Planned(None, p, "invalid_json")
        r = report(event_id=f"crash-{self.run}-{self.n}", region_code=self.rng.choice(REGIONS),
                   severity=self.rng.randint(1, 5))
        self.accepted[p].append(r)
        return Planned(orjson.dumps(r), p, "v1", r["event_id"])


class Watcher:
    """Tails reports.v1 and the DLQ, so the test can act when output appears."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.seen: set[str] = set()
        self.changed = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                         auto_offset_reset="earliest")
        await self.consumer.start()
        tps = [TopicPartition(t, p) for t in (topics.REPORTS_V1, topics.REPORTS_DLQ) for p in range(PARTITIONS)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_beginning(*tps)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            got = await self.consumer.getmany(timeout_ms=100, max_records=10_000)
            for ms in got.values():
                for m in ms:
                    v = value(m)
                    origin = (v["ingest_id"] if m.topic == topics.REPORTS_V1
                              else f"raw-{v['partition']}-{v['offset']}")
                    if origin.startswith("raw-"):  # not the reports accepted over HTTP
                        self.seen.add(origin)
            if got:
                self.changed.set()

    async def until(self, cond, timeout_s: float = 60) -> None:
        async def wait() -> None:
            while not cond():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout_s)

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        await self.consumer.stop()


async def _crash_run(stack, first_kill_after: int, second_kill_after: int) -> None:
    bootstrap = stack.config.kafka.bootstrap_servers
    group = stack.config.ingest.validator_group
    rng = random.Random(f"{first_kill_after}-{second_kill_after}")
    stream = Stream(rng, f"{first_kill_after}x{second_kill_after}")
    plan: dict[tuple[int, int], Planned] = {}

    # Reports first accepted over HTTP; the stream repeats some of them on the raw topic.
    http_accepted = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.config.ingest.port}", timeout=30) as c:
        for _ in range(10):
            r = report()
            resp = await c.post("/v1/reports", json=r, headers=auth())
            assert resp.status_code == 202, resp.text
            http_accepted.append(r)

    async def produce_phase(n: int) -> None:
        items = [stream.next(http_accepted) for _ in range(n)]
        origins = await produce_raw(bootstrap, [i.value for i in items], keys=b"65.71",
                                    partitions=[i.partition for i in items])
        plan.update(zip(origins, items))

    # A backlog, so that the first validator takes full batches from the start.
    stack.kill("ingest-validator")
    await produce_phase(3000)

    watcher = Watcher(bootstrap)
    await watcher.start()
    try:
        # Validator A: killed once it has written `first_kill_after` outputs.
        await asyncio.to_thread(stack.start_service, "ingest-validator")
        await watcher.until(lambda: len(watcher.seen) >= first_kill_after)
        stack.kill("ingest-validator")

        # Validator B: recovers A's partial batch, then is killed once it writes new output.
        await produce_phase(2000)
        await asyncio.to_thread(stack.start_service, "ingest-validator")
        # Counted once B is up: by then A's last produce requests have landed, so what
        # comes after is B's.
        before_b = len(watcher.seen)
        await watcher.until(lambda: len(watcher.seen) >= before_b + second_kill_after, timeout_s=90)
        stack.kill("ingest-validator")
        killed_at = (before_b, len(watcher.seen))

        # Validator C finishes the stream.
        await produce_phase(1000)
        await asyncio.to_thread(stack.start_service, "ingest-validator")
        await wait_processed(bootstrap, group, list(plan), timeout_s=180)
    finally:
        await watcher.stop()

    out = await read_topics(bootstrap, [topics.REPORTS_V1, topics.REPORTS_DLQ])
    v1_ids = Counter(value(m)["ingest_id"] for m in out if m.topic == topics.REPORTS_V1)
    dlq = [value(m) for m in out if m.topic == topics.REPORTS_DLQ]
    dlq_origins = Counter((d["partition"], d["offset"]) for d in dlq)
    v1_by_id = {value(m)["ingest_id"]: value(m) for m in out if m.topic == topics.REPORTS_V1}

    twice_v1 = sorted(i for i, n in v1_ids.items() if n > 1)
    twice_dlq = sorted(o for o, n in dlq_origins.items() if n > 1)
    if twice_v1:
        copies = {i: [(m.partition, m.offset, value(m)["received_at"]) for m in out
                      if m.topic == topics.REPORTS_V1 and value(m)["ingest_id"] == i] for i in twice_v1[:5]}
        pytest.fail(f"written twice to reports.v1: {len(twice_v1)} ids, e.g. {copies}; kills at {killed_at}")
    assert not twice_dlq, f"written twice to the DLQ: {twice_dlq[:20]} ({len(twice_dlq)}); kills at {killed_at}"

    raw_ids = {i for i in v1_ids if i.startswith("raw-")}
    want_v1 = {f"raw-{p}-{o}" for (p, o), it in plan.items() if it.expect == "v1"}
    want_dlq = {o: it.expect for o, it in plan.items() if it.expect not in ("v1", "duplicate")}
    assert raw_ids - want_v1 == set(), "unexpected raw messages on reports.v1 (repeats or bad ones)"
    assert want_v1 - raw_ids == set(), "good raw messages missing from reports.v1"
    assert set(dlq_origins) == set(want_dlq)
    assert {(d["partition"], d["offset"]): d["reason"] for d in dlq} == want_dlq
    for (p, o), it in plan.items():
        if it.expect == "v1":
            assert v1_by_id[f"raw-{p}-{o}"]["event_id"] == it.event_id
    # Each (source, event_id) is on reports.v1 once, whichever path it came by.
    events = Counter((v["source"], v["event_id"]) for v in v1_by_id.values())
    assert max(events.values()) == 1
    assert sum(1 for it in plan.values() if it.expect == "duplicate") > 300
    assert not stack.crashed()


@pytest.mark.slow
@pytest.mark.parametrize(("first_kill_after", "second_kill_after"), [(1, 1), (1200, 700)],
                         ids=["kill-at-first-output", "kill-mid-batch"])
def test_validator_killed_twice_mid_stream_accounts_for_every_message_once(own_stack, first_kill_after,
                                                                            second_kill_after):
    asyncio.run(_crash_run(own_stack, first_kill_after, second_kill_after))


async def _dead_owners_claim(stack) -> None:
    bootstrap = stack.config.kafka.bootstrap_servers
    stack.kill("ingest-validator")
    # What a validator leaves behind when killed between writing a report and marking it
    # accepted: the output on reports.v1 and a pending claim naming that output's origin.
    r = report()
    dead_origin = "raw-0-1000000"
    written = validate_obj(r)[0].model_dump(mode="json", exclude_none=True)
    written.update(received_at="2024-11-27T01:30:00.000Z", ingest_id=dead_origin)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        await p.send_and_wait(topics.REPORTS_V1, orjson.dumps(written), key=partition_key(r["region_code"]).encode())
    finally:
        await p.stop()
    red = aioredis.from_url(stack.config.redis.url)
    try:
        await red.set(dedup_key(r["source"], r["event_id"]), PENDING + dead_origin, px=60_000)
    finally:
        await red.aclose()

    # The same report again, on another partition, and a fresh one after it.
    later = report()
    origins = await produce_raw(bootstrap, [orjson.dumps(r), orjson.dumps(later)], partitions=[1, 1])
    await asyncio.to_thread(stack.start_service, "ingest-validator")
    # Well under the claim's 60 s: the validator must not wait for the dead owner's claim.
    await wait_processed(bootstrap, stack.config.ingest.validator_group, origins, timeout_s=30)
    v1, dlq = await outputs(bootstrap)
    assert f"raw-{origins[0][0]}-{origins[0][1]}" not in v1 and origins[0] not in dlq
    assert [value(m)["ingest_id"] for ms in v1.values() for m in ms if value(m)["event_id"] == r["event_id"]] \
        == [dead_origin]
    assert len(v1[f"raw-{origins[1][0]}-{origins[1][1]}"]) == 1


def test_repeat_of_a_report_a_dead_validator_wrote_but_did_not_mark_accepted(own_stack):
    asyncio.run(_dead_owners_claim(own_stack))
