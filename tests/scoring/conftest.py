"""One embedded stack per module for the scoring service tests: broker, Redis, the ingest
gateway and validator, and the scoring worker, on free ports."""

from __future__ import annotations

from contextlib import contextmanager

import asyncio
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import orjson
import pytest

from cli.stack import EmbeddedStack, free_port
from shared import topics
from tests.conftest import write_config
from tests.utils import auth, collect

SERVICES = ("ingest-gateway", "ingest-validator", "scoring")


def scoring_config(path: Path, method: str | None = "ears-c2") -> Path:
    # Ticks every second so a restarted worker closes its buckets at once; a free web port,
    # since 8081 may be taken by another stack on the machine. EARS C2: these tests read its
    # reasons and 35-bucket ring (tests/scoring/test_default_stack.py runs the default).
    # method None: the built-in default.
    pinned = f"  method: {method}\n" if method else ""
    return write_config(path, f"scoring:\n{pinned}  web_port: {free_port()}\n  tick_interval_s: 1\n")


@contextmanager
def started(config: Path, tmp: Path) -> Iterator[EmbeddedStack]:
    """Broker, Redis, the ingest services and one scoring worker on `config`, stopped after."""
    stack = EmbeddedStack(config, tmp, SERVICES)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def scoring_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    tmp = tmp_path_factory.mktemp("scoring")
    with started(scoring_config(tmp / "pantau.yaml"), tmp) as stack:
        yield stack


@pytest.fixture(scope="module")
def gateway(scoring_stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{scoring_stack.config.ingest.port}", timeout=30) as c:
        yield c


def post(gateway: httpx.Client, reports: list[dict[str, Any]]) -> None:
    """Publish reports in order through the batch endpoint; every one must be accepted."""
    for i in range(0, len(reports), 500):
        chunk = reports[i:i + 500]
        r = gateway.post("/v1/reports:batch", json={"reports": chunk}, headers=auth())
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()["results"]] == ["accepted"] * len(chunk), r.text


def scores(stack: EmbeddedStack, done: Callable[[list[dict]], bool], *categories: str,
           timeout_s: float = 60) -> list[dict]:
    """Score updates of these categories, read from the start of pantau.scores.v1 until `done`.
    Updates of one region share a partition, so they come in the order they were written."""
    got = asyncio.run(collect(
        stack.config.kafka.bootstrap_servers, [topics.SCORES_V1],
        lambda ms: done([orjson.loads(m.value) for m in ms]), timeout_s,
        where=lambda m: orjson.loads(m.value)["category"] in categories))
    return [orjson.loads(m.value) for m in got]


def of(updates: list[dict], region: str) -> list[dict]:
    return [u for u in updates if u["region_code"] == region]
