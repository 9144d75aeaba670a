"""The raw-topic validator when Redis goes away under it: it waits Redis out instead of
exiting, commits nothing meanwhile, and writes each report once when Redis is back."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from shared import topics
from tests.ingest.test_http import copies_on_topic, on_topic
from tests.utils import produce, report

pytestmark = pytest.mark.slow


def test_validator_waits_out_a_redis_restart_and_writes_the_report_once(own_stack):
    bootstrap = own_stack.config.kafka.bootstrap_servers
    log = own_stack.children["ingest-validator"].log_path
    r = report()
    own_stack.kill("redis")
    asyncio.run(produce(bootstrap, topics.REPORTS_RAW, [orjson.dumps(r)]))
    # The validator has the message and cannot claim it (or has exited, without the fix).
    deadline = time.monotonic() + 60
    while "redis unavailable" not in log.read_text(errors="replace"):
        assert "ingest-validator" not in own_stack.crashed(), f"validator exited while Redis was down; see {log}"
        assert time.monotonic() < deadline, f"validator never tried Redis; see {log}"
        time.sleep(0.05)

    own_stack.restart("redis")
    on_topic(bootstrap, r)
    assert copies_on_topic(bootstrap, r) == {r["event_id"]: 1}
    assert own_stack.crashed() == []
