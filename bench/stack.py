"""A private embedded stack for one benchmark: a config with free ports and the bench
source's API key (no practical rate limit) in a temporary folder, and helpers to read the
services' Prometheus metrics."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cli.stack import EmbeddedStack, free_port, wait_port
from bench.workload import API_KEY, PROVINCES, SOURCE

PARTITIONS = 4


def write_config(path: Path, provinces: tuple[str, ...] = PROVINCES, partitions: int = PARTITIONS) -> Path:
    regions = ", ".join(f'"{p}"' for p in provinces)
    path.write_text(f"""# Written by python -m bench.
kafka:
  bootstrap_servers: "127.0.0.1:{free_port()}"
  partitions: {partitions}
redis:
  url: "redis://127.0.0.1:{free_port()}/0"
ingest:
  port: {free_port()}
  metrics_port: {free_port()}
  send_timeout_s: 10
sources:
  - id: {SOURCE}
    api_key: "{API_KEY}"
    regions: [{regions}]
    rate_limit_per_minute: 1000000000
""")
    return path


@contextmanager
def embedded(services: tuple[str, ...], keep: bool = False) -> Iterator[EmbeddedStack]:
    """Broker and Redis started, then `services`; everything stopped and removed on exit
    (the folder is kept, with its logs, when `keep` is set or something failed)."""
    workdir = Path(tempfile.mkdtemp(prefix="pantau-bench-"))
    stack = EmbeddedStack(write_config(workdir / "pantau.yaml"), workdir, services)
    failed = True
    try:
        stack.start_infra()
        for name in services:
            stack.start_service(name, wait=False)
        for name in services:
            stack.wait_ready(name, timeout_s=60)
        yield stack
        failed = False
    finally:
        stack.stop()
        if failed or keep:
            print(f"bench: stack folder with logs kept at {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def wait_http_ready(port: int, path: str = "/readyz", timeout_s: float = 60) -> None:
    """Poll until GET `path` answers 200 (the gateway reaches broker and Redis)."""
    wait_port("127.0.0.1", port, timeout_s, name=f"port {port}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"GET {path} on port {port} not 200 within {timeout_s:.0f}s")
        time.sleep(0.1)


def scrape(port: int, path: str = "/metrics") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (Prometheus text format)."""
    total = 0.0
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        sname, _, lbls = series.partition("{")
        if sname != name or not all(w in lbls for w in want):
            continue
        total += float(value)
    return total


def create_topic(bootstrap: str, topic: str, partitions: int = PARTITIONS) -> None:
    async def go() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="pantau-bench")
        await admin.start()
        try:
            if topic not in set(await admin.list_topics()):
                await admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            await admin.close()

    asyncio.run(go())


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60) -> list[tuple[int, bytes | None, bytes]]:
    """Every message on `topic` as (timestamp in ms, key, value), read to the high watermark
    that Fetch reports. The timestamp is the producer's CreateTime: when the service writing
    it sent it, which is what the pipeline's per-stage times are made of."""
    async def go() -> list[tuple[int, bytes | None, bytes]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                             max_partition_fetch_bytes=4 << 20)
        await c.start()
        out: list[tuple[int, bytes | None, bytes]] = []
        try:
            await c.topics()
            tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                got = await c.getmany(timeout_ms=500, max_records=10_000)
                out += [(m.timestamp, m.key, m.value) for ms in got.values() for m in ms]
                positions = [await c.position(tp) for tp in tps]
                if all(c.highwater(tp) is not None and pos >= c.highwater(tp) for tp, pos in zip(tps, positions)):
                    break
        finally:
            await c.stop()
        return out

    return asyncio.run(go())


def peak_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a live process, in MB (0 when it is gone)."""
    return _status_kb(pid, "VmHWM:") / 1024


def rss_mb(pid: int) -> float:
    """VmRSS (resident set now) of a live process, in MB (0 when it is gone)."""
    return _status_kb(pid, "VmRSS:") / 1024


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
