"""Test-data builders and small clients for tests that talk to the real embedded stack."""

from __future__ import annotations

import asyncio
import itertools
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from cli.stack import free_port, redis_server, wait_port

_seq = itertools.count()

KALTARA_KEY = "test-key-kaltara"
JABAR_KEY = "test-key-jabar"
LIMITED_KEY = "test-key-limited"


def report(**overrides: Any) -> dict[str, Any]:
    """A valid report from `fkdm-kaltara` in Kota Tarakan, with a fresh event_id."""
    body = {
        "event_id": f"ev-{time.time_ns()}-{next(_seq)}",
        "source": "fkdm-kaltara",
        "region_code": "65.71.02",
        "category": "mass_mobilization",
        "severity": 3,
        "occurred_at": (datetime.now(timezone(timedelta(hours=8))) - timedelta(minutes=10)).isoformat(timespec="seconds"),
        "title": "Unjuk rasa di depan kantor KPU",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def auth(key: str = KALTARA_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


async def produce(bootstrap: str, topic: str, values: list[bytes], key: bytes | None = b"65.71") -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await p.start()
    try:
        futs = [await p.send(topic, v, key=key) for v in values]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def collect(
    bootstrap: str,
    topics: list[str],
    done: Callable[[list[Any]], bool],
    timeout_s: float = 60,
    where: Callable[[Any], bool] = lambda m: True,
) -> list[Any]:
    """Read `topics` from the beginning until `done(messages)` holds; messages that fail
    `where` are skipped. Returns what was read (raising on timeout, with what was seen)."""
    c = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await c.start()
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(got):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met after {timeout_s}s; {len(got)} messages seen")
            batch = await c.getmany(timeout_ms=200)
            for ms in batch.values():
                got.extend(m for m in ms if where(m))
    finally:
        await c.stop()
    return got


def value(msg: Any) -> dict[str, Any]:
    return orjson.loads(msg.value)


def stack_sections() -> str:
    """The kafka, redis, ingest and scoring sections every embedded-stack test config starts
    with, each service on a free port (the broker and Redis ports are free ones too)."""
    from cli.stack import free_port

    return f"""kafka:
  bootstrap_servers: "127.0.0.1:{free_port()}"
  partitions: 4
redis:
  url: "redis://127.0.0.1:{free_port()}/0"
ingest:
  port: {free_port()}
  metrics_port: {free_port()}
  send_timeout_s: 3
scoring:
  web_port: {free_port()}
"""


def fast_notify_section(port: int, link_secret: str, operators: bool = True) -> str:
    """The `notify` section of a stack test config, listening on `port`: timers and deliveries
    polled every 0.1 s under 2 s leases, so escalations and crash recoveries take seconds, not
    the production half-minute. `operators` names piket-ops (a contact the config must define)."""
    from cli.stack import free_port

    ops = "  operator_contacts: [piket-ops]\n" if operators else ""
    return f"""notify:
  port: {port}
  metrics_port: {free_port()}
  public_url: "http://127.0.0.1:{port}"
  link_secret: "{link_secret}"
{ops}  timer_lease_s: 2
  timer_poll_s: 0.1
  delivery:
    poll_interval_s: 0.1
    lease_margin_s: 2
"""


def gateway_client(stack: Any, timeout: float = 30) -> httpx.Client:
    """An HTTP client for the ingest gateway of a running EmbeddedStack."""
    return httpx.Client(base_url=f"http://127.0.0.1:{stack.config.ingest.port}", timeout=timeout)


def operator_client(stack: Any, token: str) -> httpx.Client:
    """An HTTP client for the notify API of a running EmbeddedStack, as the operator `token`."""
    return httpx.Client(base_url=f"http://127.0.0.1:{stack.config.notify.port}", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})


def wait_for(what: str | Callable[[], str], probe: Callable[[], Any], timeout_s: float = 60.0,
             every_s: float = 0.05) -> Any:
    """Poll an observable state until `probe()` answers something truthy, and return that answer.
    For states with no event to wait on (an HTTP answer, a process table, a port); after
    `timeout_s` the test fails naming `what` (words, or a function giving them) and the last answer."""
    deadline = time.monotonic() + timeout_s
    while not (got := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what() if callable(what) else what}: not within {timeout_s:g} s (last: {got!r})")
        time.sleep(every_s)
    return got


async def wait_for_async(what: str, probe: Callable[[], Awaitable[Any]], timeout_s: float = 60.0,
                         every_s: float = 0.05) -> Any:
    """`wait_for` for an async probe (Redis has no change feed to wait on), without blocking the loop."""
    deadline = time.monotonic() + timeout_s
    while not (got := await probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {got!r})")
        await asyncio.sleep(every_s)
    return got


@contextmanager
def local_redis(folder: Path) -> Iterator[str]:
    """A private Redis (no password) with its logs and data under `folder`; yields its URL."""
    port = free_port()
    child = redis_server(port, folder / "logs", folder / "data").start()
    try:
        wait_port("127.0.0.1", port, 15, child.proc, "redis")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        child.stop()
