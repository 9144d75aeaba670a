"""The fault suite's two instruments: a publisher that sends a steady stream of reports the
way a real source does, and a tail that reads every topic the pipeline writes.

`Publisher` runs its own event loop in a thread. It sends one report every 1/rate seconds,
mostly over HTTP (`POST /v1/reports`) and some straight onto `pantau.reports.raw` (valid ones
and deliberately invalid ones, which must end in the DLQ). Like a real source it retries a
report on 429, 503 and connection errors with the same event_id until it gets an answer
(202 accepted or 200 duplicate), honouring `Retry-After`; it never gives up on its own.
Every report is tagged with the fault phase that was current when it was first sent.

`Tail` reads pantau.reports.raw, reports.v1, the DLQ, scores.v1 and escalations.v1 from the
beginning in a thread, and lets the test wait on what it has seen.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from shared import topics

CATEGORIES = ("election_dispute", "mass_mobilization", "sara_incitement", "hoax_disinformation", "communal_clash",
              "land_resource_conflict", "political_violence", "security_threat", "other")
# The background stream: Kalimantan Utara, never severity 5 and never casualties, so it can
# raise levels to siaga at most, and no policy pages for it.
BACKGROUND_REGIONS = ("65.71", "65.71.01", "65.71.02", "65.01", "65.01.01", "65.02", "65.03", "65.03.05", "65.04")
INVALID_KINDS = ("invalid_json", "invalid", "unknown_region")
EVENT_ID = re.compile(rb"flt-[A-Za-z0-9]+-[a-z0-9-]+")


def _occurred_at() -> str:
    return (datetime.now(timezone(timedelta(hours=8))) - timedelta(minutes=10)).isoformat(timespec="seconds")


@dataclass
class Sent:
    """One report and what became of it at the sender."""

    event_id: str
    phase: str
    path: str  # "http" or "raw"
    kind: str  # "valid" or the DLQ reason it must get
    body: dict[str, Any]
    outcome: str | None = None  # accepted | duplicate | produced | "http <status>"
    answers: Counter = field(default_factory=Counter)  # every answer, e.g. 503, 429, "conn", 202

    @property
    def retries(self) -> int:
        return sum(self.answers.values()) - (1 if self.outcome else 0)

    @property
    def accepted(self) -> bool:
        return self.kind == "valid" and self.outcome in ("accepted", "duplicate", "produced")


class Publisher:
    """A steady stream of reports from source `source`, sent as a real publisher would."""

    def __init__(self, ingest_url: str, api_key: str, bootstrap: str, source: str, rate_per_s: float,
                 raw_share: float = 0.1, seed: int = 6):
        self.ingest_url = ingest_url
        self.api_key = api_key
        self.bootstrap = bootstrap
        self.source = source
        self.rate = rate_per_s
        self.raw_share = raw_share
        self.rng = random.Random(seed)
        self.run_id = f"{int(time.time()) % 100000:05d}"
        self.phase = "setup"
        self.sent: dict[str, Sent] = {}
        self.cond = threading.Condition()
        self._seq = itertools.count(1)  # shared by the test thread and the loop
        self._streaming = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="fault-publisher", daemon=True)

    # ---------------------------------------------------------------- control, from the test thread
    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("publisher did not start")
        self._streaming = True

    def stop_stream(self) -> None:
        """No new background reports; reports already sent keep being retried to an answer."""
        self._streaming = False

    def inject(self, body: dict[str, Any], path: str = "http") -> Sent:
        """Send one report (built by `report`) outside the background stream."""
        s = Sent(body["event_id"], self.phase, path, "valid", body)
        with self.cond:
            self.sent[s.event_id] = s
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._spawn, s)
        return s

    def wait(self, predicate: Callable[["Publisher"], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    def unanswered(self) -> list[Sent]:
        with self.cond:
            return [s for s in self.sent.values() if s.outcome is None]

    def answers(self, phase: str | None = None) -> Counter:
        with self.cond:
            total: Counter = Counter()
            for s in self.sent.values():
                if phase is None or s.phase == phase:
                    total.update(s.answers)
            return total

    def close(self) -> None:
        self._closing = True
        self._thread.join(30)

    # ---------------------------------------------------------------- reports
    def report(self, region_code: str, category: str, severity: int, **extra: Any) -> dict[str, Any]:
        return {
            "event_id": f"flt-{self.run_id}-{next(self._seq)}",
            "source": self.source,
            "region_code": region_code,
            "category": category,
            "severity": severity,
            "occurred_at": _occurred_at(),
            "title": "Laporan uji ketahanan",
            **extra,
        }

    def _background(self) -> Sent:
        rng = self.rng
        body = self.report(rng.choice(BACKGROUND_REGIONS), rng.choice(CATEGORIES), rng.choice((1, 1, 2, 2, 3, 3, 4)),
                           verified=rng.random() < 0.3)
        if rng.random() >= self.raw_share:
            return Sent(body["event_id"], self.phase, "http", "valid", body)
        kind = rng.choice(("valid",) * 3 + INVALID_KINDS)
        if kind == "invalid":
            body["severity"] = rng.choice(["3", 0, 6, 2.5])
        elif kind == "unknown_region":
            body["region_code"] = "65.99.01"
        return Sent(body["event_id"], self.phase, "raw", kind, body)

    # ---------------------------------------------------------------- the event loop
    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.client = httpx.AsyncClient(base_url=self.ingest_url, timeout=httpx.Timeout(30, connect=2),
                                        limits=httpx.Limits(max_connections=400, max_keepalive_connections=32))
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5,
                                         request_timeout_ms=5000, retry_backoff_ms=200)
        await self.producer.start()
        self._ready.set()
        try:
            next_at = self._loop.time()
            while not self._closing:
                if self._streaming:
                    s = self._background()
                    with self.cond:
                        self.sent[s.event_id] = s
                    self._spawn(s)
                next_at += 1 / self.rate
                delay = next_at - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    next_at = self._loop.time()  # fell behind (CPU): keep the rate, do not burst
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            await self.client.aclose()
            await self.producer.stop()

    def _spawn(self, s: Sent) -> None:
        t = asyncio.get_running_loop().create_task(self._send_http(s) if s.path == "http" else self._send_raw(s))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _answer(self, s: Sent, answer: Any, outcome: str | None = None) -> None:
        with self.cond:
            s.answers[answer] += 1
            if outcome is not None:
                s.outcome = outcome
            self.cond.notify_all()

    async def _send_http(self, s: Sent) -> None:
        body = orjson.dumps(s.body)
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        backoff = 0.1
        while True:
            try:
                r = await self.client.post("/v1/reports", content=body, headers=headers)
            except httpx.TransportError:
                self._answer(s, "conn")
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 2.0)
                continue
            if r.status_code == 429 or r.status_code >= 500:
                self._answer(s, r.status_code)
                try:
                    after = float(r.headers.get("Retry-After", "1"))
                except ValueError:
                    after = 1.0
                await asyncio.sleep(min(after, 5.0) * (0.5 + random.random() / 2))
                continue
            outcome = {202: "accepted", 200: "duplicate"}.get(r.status_code, f"http {r.status_code}")
            self._answer(s, r.status_code, outcome)
            return

    async def _send_raw(self, s: Sent) -> None:
        if s.kind == "invalid_json":
            value = orjson.dumps(s.body)[:-3]
        else:
            value = orjson.dumps(s.body)
        key = str(s.body.get("region_code", "65.71")).encode()
        backoff = 0.2
        while True:
            try:
                await asyncio.wait_for(self.producer.send_and_wait(topics.REPORTS_RAW, value, key=key), 15)
            except (KafkaError, asyncio.TimeoutError):
                # Maybe written, maybe not: send it again, as a Kafka publisher does. A repeat
                # of a valid report is a duplicate for the validator; of an invalid one, a
                # second raw message that gets its own DLQ record.
                self._answer(s, "kafka-error")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self._answer(s, "acked", "produced")
            return


class Tail:
    """Everything on the pipeline's topics, read from the beginning in a thread."""

    TOPICS = (topics.REPORTS_RAW, topics.REPORTS_V1, topics.REPORTS_DLQ, topics.SCORES_V1, topics.ESCALATIONS_V1)

    def __init__(self, bootstrap: str, partitions: int):
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.cond = threading.Condition()
        self.v1: dict[tuple[str, str], list[str]] = defaultdict(list)  # (source, event_id) -> ingest_ids
        self.raw: dict[tuple[int, int], str | None] = {}  # (partition, offset) -> event_id in the payload
        self.dlq: list[dict[str, Any]] = []  # {partition, offset, reason, event_id}
        self.scores: list[dict[str, Any]] = []
        self.escalations: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self._closing = False
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="fault-tail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        self._thread.join(30)

    def wait(self, predicate: Callable[["Tail"], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)

    def scored(self, region: str, category: str, level: str = "awas") -> bool:
        return any(s["region_code"] == region and s["category"] == category and s["level"] == level
                   for s in self.scores)

    def incident_cell(self) -> dict[str, tuple[str, str]]:
        with self.cond:
            return {e["incident_id"]: (e["region_code"], e["category"]) for e in self.escalations}

    @staticmethod
    def _event_id(payload: bytes | None) -> str | None:
        m = EVENT_ID.search(payload or b"")
        return m.group().decode() if m else None

    def _take(self, m: Any) -> None:
        if m.topic == topics.REPORTS_RAW:
            self.raw[(m.partition, m.offset)] = self._event_id(m.value)
            return
        v = orjson.loads(m.value)
        if m.topic == topics.REPORTS_V1:
            self.v1[(v["source"], v["event_id"])].append(v.get("ingest_id", ""))
        elif m.topic == topics.REPORTS_DLQ:
            self.dlq.append({"partition": v["partition"], "offset": v["offset"], "reason": v["reason"],
                             "event_id": self._event_id(base64.b64decode(v.get("payload_b64") or ""))})
        elif m.topic == topics.SCORES_V1:
            self.scores.append({k: v.get(k) for k in ("region_code", "category", "level", "report_ids")})
        elif m.topic == topics.ESCALATIONS_V1:
            self.escalations.append({k: v.get(k) for k in ("incident_id", "status", "region_code", "category",
                                                            "step", "level")})

    async def _main(self) -> None:
        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest", request_timeout_ms=10_000)
        await c.start()
        try:
            tps = [TopicPartition(t, p) for t in self.TOPICS for p in range(self.partitions)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            while not self._closing:
                try:
                    got = await c.getmany(timeout_ms=200, max_records=5000)
                except KafkaError as e:  # the broker is paused: keep reading once it is back
                    with self.cond:
                        self.errors.append(e)
                    continue
                if got:
                    with self.cond:
                        for ms in got.values():
                            for m in ms:
                                self._take(m)
                        self.cond.notify_all()
        finally:
            await c.stop()
