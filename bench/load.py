"""A closed-loop HTTP/1.1 load generator: N keep-alive connections, each sending its next
pre-built request as soon as the previous response is complete.

It runs in its own process (`measure` spawns it), on uvloop, and speaks HTTP through a bare
asyncio Protocol, so that a request costs the client a few microseconds: a Python HTTP
client library would be slower than the servers it measures. Responses must carry
Content-Length (uvicorn's do); anything else counts as an error.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Spec:
    """What to send, where, and the bounds of the run."""

    host: str
    port: int
    path: str
    headers: dict[str, str]
    bodies: Callable[[], list[bytes]]  # picklable (a module-level function or a partial of one)
    connections: int
    duration_s: float
    max_requests: int
    cycle: bool = False  # reuse the bodies round-robin (only where repeats do not matter)
    count_token: bytes | None = None  # counted in every response body, e.g. b'"accepted"'
    hang_timeout_s: float = 30.0  # how long to wait for responses after the last request


@dataclass
class Result:
    """What one run measured; `elapsed_s` runs from the first request to the last answer."""

    completed: int = 0
    elapsed_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    tokens: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    bytes_sent: int = 0
    build_s: float = 0.0
    cpu_s: float = 0.0  # the load generator's own CPU over the timed window

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s else 0.0

    def ok(self, *statuses: int) -> int:
        return sum(self.statuses.get(s, 0) for s in statuses)


def measure(spec: Spec) -> Result:
    """Run `spec` in a fresh process and return what it measured."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_main, spec).result()


def _main(spec: Spec) -> Result:
    import uvloop

    t0 = time.perf_counter()
    bodies = spec.bodies()
    head = "".join(f"{k}: {v}\r\n" for k, v in spec.headers.items())
    prefix = f"POST {spec.path} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n{head}"
    requests = [f"{prefix}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
    del bodies
    build_s = time.perf_counter() - t0
    result = uvloop.run(_run(spec, requests))
    result.build_s = build_s
    return result


class _Run:
    """Hands out requests until the count or the time is up, and records each answer."""

    def __init__(self, spec: Spec, requests: list[bytes]):
        self.spec = spec
        self.requests = requests
        self.limit = spec.max_requests if spec.cycle else min(spec.max_requests, len(requests))
        self.issued = 0
        self.deadline = 0.0
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.tokens = 0
        self.bytes_sent = 0
        self.last_done = 0.0
        self.busy = 0
        self.finished: asyncio.Future | None = None

    def next_request(self) -> bytes | None:
        if self.issued >= self.limit or time.perf_counter() >= self.deadline:
            return None
        req = self.requests[self.issued % len(self.requests)]
        self.issued += 1
        return req

    def answered(self, status: int, body: bytes | bytearray, latency: float) -> None:
        self.latencies.append(latency)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if self.spec.count_token:
            self.tokens += body.count(self.spec.count_token)
        self.last_done = time.perf_counter()

    def idle(self) -> None:
        self.busy -= 1
        if self.busy == 0 and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)


class _Conn(asyncio.Protocol):
    """One keep-alive connection: send, read one whole response, send the next."""

    def __init__(self, run: _Run):
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.need = -1  # total bytes of the response in flight, once its head is parsed
        self.body_at = 0
        self.status = 0
        self.sent_at = 0.0
        self.in_flight = False
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def start(self) -> None:
        self.run.busy += 1
        self._send()

    def _send(self) -> None:
        req = None if self.closed else self.run.next_request()
        if req is None:
            self.in_flight = False
            self.run.idle()
            return
        self.in_flight = True
        self.run.bytes_sent += len(req)
        self.sent_at = time.perf_counter()
        self.transport.write(req)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            self.status = int(head[9:12])
            i = head.find(b"\r\ncontent-length:")
            if i < 0:
                self._fail()
                return
            j = head.find(b"\r\n", i + 2)
            self.need = end + 4 + int(head[i + 17: j if j > 0 else len(head)])
            self.body_at = end + 4
        if len(buf) < self.need:
            return
        latency = time.perf_counter() - self.sent_at
        self.run.answered(self.status, buf[self.body_at:self.need], latency)
        del buf[:self.need]
        self.need = -1
        self._send()

    def _fail(self) -> None:
        self.run.errors += 1
        self.closed = True
        self.transport.close()  # type: ignore[union-attr]

    def connection_lost(self, exc) -> None:
        if self.in_flight:
            self.run.errors += 1
            self.in_flight = False
            self.closed = True
            self.run.idle()
        self.closed = True


async def _run(spec: Spec, requests: list[bytes]) -> Result:
    loop = asyncio.get_running_loop()
    run = _Run(spec, requests)
    conns: list[_Conn] = []
    for _ in range(spec.connections):
        _, proto = await loop.create_connection(lambda: _Conn(run), spec.host, spec.port)
        conns.append(proto)  # type: ignore[arg-type]
    run.finished = loop.create_future()
    cpu0 = _cpu()
    start = time.perf_counter()
    run.deadline = start + spec.duration_s
    for c in conns:
        c.start()
    try:
        await asyncio.wait_for(run.finished, spec.duration_s + spec.hang_timeout_s)
    except asyncio.TimeoutError:
        run.errors += sum(1 for c in conns if c.in_flight)  # never answered
    cpu_s = _cpu() - cpu0
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    lat = sorted(run.latencies)
    n = len(lat)

    def pct(q: float) -> float:
        return lat[min(n - 1, int(q * n))] * 1000 if n else 0.0

    return Result(
        completed=n, elapsed_s=(run.last_done - start) if n else 0.0, statuses=run.statuses,
        errors=run.errors, tokens=run.tokens, p50_ms=pct(0.50), p99_ms=pct(0.99), max_ms=pct(1.0),
        bytes_sent=run.bytes_sent, cpu_s=cpu_s,
    )


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
