"""An open-loop HTTP load generator: request i is sent at start + i / rate whatever happened to
the earlier ones (a steady arrival rate, as from many independent reporters), so a slow
server gets more requests in flight instead of fewer requests, and latency counts from the
scheduled time (a request that waited for a free connection includes that wait).

It runs in its own process (`run_open` spawns it) on uvloop. Connections are kept alive and
reused; a new one is opened when all are busy, up to `max_connections`. Each request is
(event_id, body); the result gives, per request, the scheduled time and the time its answer
was complete, both on the wall clock so they compare with Kafka timestamps and the
webhook receiver's arrival times.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class OpenSpec:
    host: str
    port: int
    path: str
    headers: dict[str, str]
    requests: Callable[[], list[tuple[str, bytes]]]  # picklable; (event_id, body)
    rate: float  # requests per second
    max_connections: int = 256
    tail_s: float = 30.0  # how long to wait for the last answers


@dataclass
class OpenResult:
    """Per request: event_id, scheduled wall time, answered wall time (0: no answer), status."""

    sent: list[tuple[str, float, float, int]] = field(default_factory=list)
    connections: int = 0
    late_starts: int = 0  # requests that found no free connection and waited for one
    cpu_s: float = 0.0
    duration_s: float = 0.0  # first scheduled to last scheduled

    def latencies_ms(self, status: int | None = None) -> list[float]:
        return sorted(1000 * (done - at) for _, at, done, st in self.sent
                      if done and (status is None or st == status))


def start_open(spec: OpenSpec) -> tuple[ProcessPoolExecutor, Future]:
    """Start `spec` in a fresh process; the caller waits on the future (and shuts the pool)."""
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    return pool, pool.submit(_main, spec)


def run_open(spec: OpenSpec) -> OpenResult:
    pool, fut = start_open(spec)
    with pool:
        return fut.result()


def _main(spec: OpenSpec) -> OpenResult:
    import uvloop

    reqs = spec.requests()
    head = "".join(f"{k}: {v}\r\n" for k, v in spec.headers.items())
    prefix = f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n{head}"
    wire = [(eid, f"{prefix}Content-Length: {len(b)}\r\n\r\n".encode() + b) for eid, b in reqs]
    return uvloop.run(_run(spec, wire))


# A server closes keep-alive connections idle this long (uvicorn: 5 s); older ones are not reused.
IDLE_MAX_S = 3.0


class _Pool:
    def __init__(self, spec: OpenSpec) -> None:
        self.spec = spec
        self.idle: list[tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], float]] = []
        self.waiters: list[asyncio.Future] = []
        self.opened = 0

    async def get(self) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], bool]:
        while self.idle:
            conn, since = self.idle.pop()  # the most recently used first
            if time.perf_counter() - since < IDLE_MAX_S:
                return conn, False
            conn[1].close()
            self.opened -= 1
        if self.opened < self.spec.max_connections:
            self.opened += 1
            return await asyncio.open_connection(self.spec.host, self.spec.port), False
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        return await fut, True

    def put(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        while self.waiters:
            w = self.waiters.pop(0)
            if not w.done():
                w.set_result(conn)
                return
        self.idle.append((conn, time.perf_counter()))

    def lost(self) -> None:
        self.opened -= 1


async def _one(pool: _Pool, wire: bytes) -> tuple[int, bool]:
    conn, waited = await pool.get()
    reader, writer = conn
    try:
        writer.write(wire)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await reader.readexactly(length)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        writer.close()
        pool.lost()
        return 0, waited
    pool.put(conn)
    return status, waited


async def _run(spec: OpenSpec, wire: list[tuple[str, bytes]]) -> OpenResult:
    res = OpenResult()
    pool = _Pool(spec)
    # Wall clock = perf clock + offset, fixed once, so scheduled times are exact.
    offset = time.time() - time.perf_counter()
    start = time.perf_counter() + 0.2
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    tasks = []

    async def fire(i: int, eid: str, data: bytes, at: float) -> None:
        status, waited = await _one(pool, data)
        done = time.perf_counter()
        res.late_starts += waited
        res.sent[i] = (eid, at + offset, (done + offset) if status else 0.0, status)

    res.sent = [("", 0.0, 0.0, 0)] * len(wire)
    for i, (eid, data) in enumerate(wire):
        at = start + i / spec.rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i, eid, data, at)))
    res.duration_s = (len(wire) - 1) / spec.rate if wire else 0.0
    if tasks:
        await asyncio.wait(tasks, timeout=spec.tail_s)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    res.cpu_s = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    res.connections = pool.opened
    for (_, w), _ in pool.idle:
        w.close()
    return res


def pct(sorted_values: list[float], q: float) -> float | None:
    """The q-quantile of an ascending list (nearest rank), or None when it is empty."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]
