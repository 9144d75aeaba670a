"""Two scoring workers on one machine share the partitions; when one is killed with SIGKILL
mid-stream the other takes its partitions over, and the levels and counts are those of a run
that never stopped."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from cli.stack import Child, EmbeddedStack, free_port, wait_port
from services.scoring.agents import partition_of
from tests.scoring.conftest import of, post, scores, scoring_config
from tests.scoring.test_service import now_local, uninterrupted
from tests.utils import JABAR_KEY, auth, report

CAT = "political_violence"
# Every partition of four carries a region: 65.04/65.71 → 0, 32.73 → 1, 65.03/32.04 → 2, 65.01/65.02 → 3.
PLAN = {"65.71": 500, "65.04": 3, "32.73": 400, "65.03": 500, "32.04": 9, "65.01": 400, "65.02": 6}
JABAR = ("32.73", "32.04")


def worker(stack: EmbeddedStack, name: str) -> tuple[Child, int]:
    port = free_port()
    child = Child(name, [sys.executable, "-m", "services.scoring", "--web-port", str(port)],
                  stack.logdir / f"{name}.log", env={"PANTAU_CONFIG": str(stack.config_path)}).start()
    wait_port("127.0.0.1", port, 60, child.proc, name)
    return child, port


def batches(port: int) -> float:
    """When the worker last applied a batch (0 before its first): it gets ticks, and so
    batches, only for partitions it owns."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    m = re.search(r"^pantau_scoring_last_batch_timestamp_seconds (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_owning(port: int, child: Child, after: float = 0.0, timeout_s: float = 90) -> None:
    """Until the worker applies a batch later than `after` (epoch seconds)."""
    deadline = time.monotonic() + timeout_s
    while batches(port) <= after:
        assert child.alive, f"{child.name} exited; see {child.log_path}"
        assert time.monotonic() < deadline, f"{child.name} owns no partition after {timeout_s}s"
        time.sleep(0.2)


@pytest.fixture
def bare_stack(tmp_path: Path) -> Iterator[EmbeddedStack]:
    """Broker, Redis, gateway and validator, no scoring worker; a fixture so that a failure
    carries the services' logs (tests/conftest.py), the workers' among them."""
    stack = EmbeddedStack(scoring_config(tmp_path / "pantau.yaml"), tmp_path, ("ingest-gateway", "ingest-validator"))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def two_workers(bare_stack: EmbeddedStack) -> Iterator[tuple[EmbeddedStack, list[tuple[Child, int]]]]:
    stack = bare_stack
    workers: list[tuple[Child, int]] = []
    try:
        workers.append(worker(stack, "scoring-a"))
        wait_owning(workers[0][1], workers[0][0])
        workers.append(worker(stack, "scoring-b"))
        wait_owning(workers[1][1], workers[1][0])
        # B's first batch came after the rebalance; a later one of A's proves A kept partitions.
        wait_owning(workers[0][1], workers[0][0], after=batches(workers[1][1]))
        yield stack, workers
    finally:
        for child, _ in workers:
            child.stop()


def post_all(gateway: httpx.Client, bodies: list[dict]) -> None:
    for region in {b["region_code"] for b in bodies}:
        group = [b for b in bodies if b["region_code"] == region]
        if region in JABAR:
            r = gateway.post("/v1/reports:batch", json={"reports": group}, headers=auth(JABAR_KEY))
            assert r.status_code == 200 and {x["status"] for x in r.json()["results"]} == {"accepted"}, r.text
        else:
            post(gateway, group)


def body(region: str, **kw) -> dict:
    source = "bawaslu-jabar" if region in JABAR else "fkdm-kaltara"
    return report(region_code=region, source=source, category=CAT, verified=True, occurred_at=now_local(), **kw)


def halves() -> tuple[list[dict], list[dict]]:
    bodies = {r: [body(r) for _ in range(n)] for r, n in PLAN.items()}
    return ([x for r, n in PLAN.items() for x in bodies[r][: n // 2]],
            [x for r, n in PLAN.items() for x in bodies[r][n // 2:]])


def assert_as_if_uninterrupted(stack: EmbeddedStack, gateway: httpx.Client, sent: list[dict]) -> None:
    """The levels are those of a run that never stopped; then one grave report per region,
    whose update carries the day's exact count: nothing was lost and nothing counted twice."""
    expected = uninterrupted(sent, stack.config)
    assert expected == {"65.71": "siaga", "32.73": "siaga", "65.03": "siaga", "32.04": "siaga",
                        "65.01": "siaga", "65.02": "waspada"}  # 65.04 (3 reports): normal

    def last_levels(us: list[dict]) -> dict[str, str]:
        return {u["region_code"]: u["level"] for u in us if len(u["region_code"]) > 2}

    settled = scores(stack, lambda us: last_levels(us) == expected, CAT, timeout_s=120)
    assert of(settled, "65.04") == []
    post_all(gateway, [body(r, severity=5) for r in PLAN])
    updates = scores(stack, lambda us: {u["region_code"] for u in us if u["level"] == "awas"} >= set(PLAN), CAT,
                     timeout_s=120)
    for region, n in PLAN.items():
        awas = [u for u in of(updates, region) if u["level"] == "awas"][0]
        assert (awas["observed"], awas["weighted"]) == (n + 1, n + 1.0), region


@pytest.mark.slow
def test_a_killed_worker_s_partitions_move_to_the_other_and_nothing_counts_twice(two_workers):
    stack, ((a, a_port), (b, b_port)) = two_workers
    assert {partition_of(r, stack.config.kafka.partitions) for r in PLAN} == {0, 1, 2, 3}
    for port in (a_port, b_port):
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    first, second = halves()
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.config.ingest.port}", timeout=30) as gateway:
        post_all(gateway, first)
        scores(stack, lambda us: len(us) > 0, CAT)  # the workers are busy with them: now
        a.kill()
        post_all(gateway, second)
        assert_as_if_uninterrupted(stack, gateway, first + second)
    assert b.alive


@pytest.mark.slow
def test_a_worker_joining_mid_stream_takes_partitions_without_counting_twice(bare_stack: EmbeddedStack):
    """The rebalance a second worker causes revokes partitions from a worker that is busy
    with them: its batch in flight ends first, and what it fetched before is not applied after."""
    stack = bare_stack
    workers: list[Child] = []
    try:
        a, a_port = worker(stack, "scoring-a")
        workers.append(a)
        wait_owning(a_port, a)
        first, second = halves()
        with httpx.Client(base_url=f"http://127.0.0.1:{stack.config.ingest.port}", timeout=30) as gateway:
            post_all(gateway, first)
            scores(stack, lambda us: len(us) > 0, CAT)  # A is busy with them: now
            b, b_port = worker(stack, "scoring-b")
            workers.append(b)
            post_all(gateway, second)
            wait_owning(b_port, b)
            assert_as_if_uninterrupted(stack, gateway, first + second)
        assert a.alive and b.alive
    finally:
        for child in workers:
            child.stop()


def test_workers_on_one_machine_never_share_a_datadir():
    from services.scoring.datadir import worker_datadir

    assert worker_datadir() != worker_datadir()
