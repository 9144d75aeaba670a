"""An offset of pantau.reports.v1 that holds no record, with records after it (the hole Tansu's
`s3://` engine can leave when a power cut falls inside one producer's write while another's
later batch is stored): the scoring worker goes on past it (services/scoring/holes.py) instead
of seeking back to it for ever, and the reports after it are scored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from cli.s3merge import parse
from cli.stack import EmbeddedStack
from shared import topics
from tests.cli.test_s3expiry import records_dir
from tests.scoring.conftest import SERVICES, scoring_config
from tests.utils import auth, collect, report

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

REGION = "65.01"
WARM, LOST, AFTER = "communal_clash", "political_violence", "security_threat"


def publish(stack: EmbeddedStack, body: dict) -> tuple[int, int]:
    """Post one report and wait for it on reports.v1; its (partition, offset)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{stack.config.ingest.port}", timeout=30) as c:
        r = c.post("/v1/reports", json=body, headers=auth())
        assert r.status_code == 202, r.text
    (m,) = asyncio.run(collect(stack.config.kafka.bootstrap_servers, [topics.REPORTS_V1], lambda ms: len(ms) == 1,
                               where=lambda m: orjson.loads(m.value)["event_id"] == body["event_id"]))
    return m.partition, m.offset


def scored(stack: EmbeddedStack, category: str) -> list[dict]:
    got = asyncio.run(collect(stack.config.kafka.bootstrap_servers, [topics.SCORES_V1], lambda ms: len(ms) >= 1,
                              90, where=lambda m: orjson.loads(m.value)["category"] == category))
    return [orjson.loads(m.value) for m in got]


def test_reports_after_an_offset_with_no_record_are_scored(tmp_path: Path) -> None:
    cfg = scoring_config(tmp_path / "pantau.yaml")
    with EmbeddedStack(cfg, tmp_path, SERVICES, durable=True) as stack:
        publish(stack, report(region_code=REGION, category=WARM, severity=5))
        assert scored(stack, WARM)[0]["level"] == "awas"  # the worker has progress on this partition
        stack.children["scoring"].stop()
        p, lost = publish(stack, report(region_code=REGION, category=LOST, severity=5))
        assert publish(stack, report(region_code=REGION, category=AFTER, severity=5)) == (p, lost + 1)

    # The hole: the batch of the report the worker would read next is gone, the one after stays.
    folder = records_dir(tmp_path / "broker", topics.REPORTS_V1).parent.with_name(f"{p:010d}") / "records"
    batch = parse(folder, f"{lost:020d}.batch")
    assert batch is not None and batch.last == lost, "the report of the hole must have a batch of its own"
    (folder / batch.name).unlink()

    with EmbeddedStack(cfg, tmp_path, SERVICES, durable=True) as stack:
        after = scored(stack, AFTER)
        assert (after[0]["region_code"], after[0]["level"]) == (REGION, "awas")
    log = (tmp_path / "logs" / "scoring.log").read_text()
    assert f"offsets {lost}..{lost} hold no record" in log
