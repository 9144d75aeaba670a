"""A full Redis (maxmemory reached, noeviction) is a clear 503 at ingest with nothing half
accepted, and the same report is accepted once when there is room again."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import redis

from services.ingest.state import dedup_key
from tests.ingest.test_http import check_json, check_problem, copies_on_topic, retry_after
from tests.utils import auth, report

FULL = "state store full: Redis has reached its maxmemory and refuses writes"


def test_embedded_redis_is_bounded_and_never_evicts(own_stack):
    r = redis.Redis.from_url(own_stack.config.redis.url)
    assert int(r.config_get("maxmemory")["maxmemory"]) > 0
    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"


def test_full_redis_is_a_clear_503_and_nothing_half_accepted(own_stack):
    bootstrap = own_stack.config.kafka.bootstrap_servers
    r = redis.Redis.from_url(own_stack.config.redis.url)
    before, full, in_batch = report(), report(), report()
    with httpx.Client(base_url=f"http://127.0.0.1:{own_stack.config.ingest.port}", timeout=30) as c:
        assert check_json(c.post("/v1/reports", content=orjson.dumps(before), headers=auth()), 202)
        limit = r.config_get("maxmemory")["maxmemory"]
        # A tiny maxmemory on the real server: below what it uses, so every write is refused.
        r.config_set("maxmemory", str(max(1, r.info("memory")["used_memory"] // 2)))
        try:
            single = c.post("/v1/reports", content=orjson.dumps(full), headers=auth())
            batch = c.post("/v1/reports:batch", content=orjson.dumps({"reports": [in_batch]}), headers=auth())
            assert check_problem(single, 503, "unavailable")["detail"].startswith(FULL + "; nothing was accepted")
            assert retry_after(single) >= 1
            assert check_problem(batch, 503, "unavailable")["detail"].startswith(FULL)
            metrics = c.get("/metrics").text
            assert "pantau_redis_maxmemory_bytes" in metrics and "pantau_redis_used_memory_bytes" in metrics
        finally:
            r.config_set("maxmemory", limit)
        # Nothing half accepted: no claim left behind, nothing on the topic.
        assert r.get(dedup_key(full["source"], full["event_id"])) is None
        assert copies_on_topic(bootstrap, full, in_batch) == {full["event_id"]: 0, in_batch["event_id"]: 0}

        assert check_json(c.post("/v1/reports", content=orjson.dumps(full), headers=auth()), 202)["status"] \
            == "accepted"
    assert copies_on_topic(bootstrap, before, full) == {before["event_id"]: 1, full["event_id"]: 1}


def test_full_redis_pauses_the_validator_and_the_raw_report_lands_once_after(own_stack):
    from shared import topics
    from tests.utils import produce

    bootstrap = own_stack.config.kafka.bootstrap_servers
    r = redis.Redis.from_url(own_stack.config.redis.url)
    raw = report()
    limit = r.config_get("maxmemory")["maxmemory"]
    r.config_set("maxmemory", str(max(1, r.info("memory")["used_memory"] // 2)))
    try:
        asyncio.run(produce(bootstrap, topics.REPORTS_RAW, [orjson.dumps(raw)]))
        # Paused, not crashed: it says so in its log while Redis refuses its claim.
        log = own_stack.logdir / "ingest-validator.log"
        deadline = time.monotonic() + 60
        while b"redis full" not in log.read_bytes():
            assert time.monotonic() < deadline, "the validator never met the full Redis"
            time.sleep(0.1)
        assert own_stack.crashed() == []
        assert copies_on_topic(bootstrap, raw) == {raw["event_id"]: 0}
    finally:
        r.config_set("maxmemory", limit)
    deadline = time.monotonic() + 60
    while copies_on_topic(bootstrap, raw) != {raw["event_id"]: 1}:
        assert time.monotonic() < deadline, "the raw report never reached reports.v1"
        time.sleep(0.2)
    assert own_stack.crashed() == []
