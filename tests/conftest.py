"""Fixtures that start the real embedded stack: a Tansu broker, a Valkey server and the
services as separate processes, on free ports under a temporary folder."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import httpx
import pytest

from cli.stack import EmbeddedStack, free_port
from shared.config import sha256_hex
from tests.utils import JABAR_KEY, KALTARA_KEY, LIMITED_KEY, stack_sections


def write_config(path: Path, extra: str = "") -> Path:
    path.write_text(f"""
{stack_sections()}notify:
  port: {free_port()}
  metrics_port: {free_port()}
sources:
  - id: fkdm-kaltara
    api_key_sha256: "{sha256_hex(KALTARA_KEY)}"
    regions: ["65"]
  - id: bawaslu-jabar
    api_key: "{JABAR_KEY}"
    regions: ["32.73", "32.04"]
  - id: limited
    api_key: "{LIMITED_KEY}"
    regions: ["65"]
    rate_limit_per_minute: 5
{extra}""")
    return path


def make_stack(tmp: Path, services: tuple[str, ...] = ("ingest-gateway", "ingest-validator")) -> EmbeddedStack:
    tmp.mkdir(parents=True, exist_ok=True)
    stack = EmbeddedStack(write_config(tmp / "pantau.yaml"), tmp, services)
    stack.start()
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """One stack for the whole session; tests must not kill its processes."""
    s = make_stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.stop()


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[EmbeddedStack]:
    """A private stack for a test that kills or pauses things."""
    s = make_stack(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def ingest(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.config.ingest.port}", timeout=30) as c:
        yield c


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """A failed test that ran on an embedded stack carries the end of each service's log in
    its report: CI keeps nothing else, and "no update came" says nothing about why."""
    report = yield
    if report.failed and call.when == "call":
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, EmbeddedStack):
                for log in sorted(value.logdir.glob("*.log")):
                    if log.name in ("broker.log", "redis.log"):
                        continue
                    tail = log.read_bytes()[-6000:].decode("utf-8", "replace")
                    report.sections.append((f"service log {log.name} (last 6 kB)", tail))
    return report
