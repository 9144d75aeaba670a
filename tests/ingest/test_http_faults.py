"""The ingest gateway when the broker or Redis is gone (contract: 503 with Retry-After, and
nothing accepted), and once they are back; each test on a private stack it may break."""

from __future__ import annotations

import os
import signal
import time

import httpx
import orjson
import pytest
import redis

from shared.kafka import ensure_topics
from tests.ingest.test_http import check_json, check_problem, copies_on_topic, on_topic, retry_after
from tests.utils import auth, report

pytestmark = pytest.mark.slow


def _client(stack) -> httpx.Client:
    # The timeout bounds how long a publisher waits for its answer while a peer is down.
    return httpx.Client(base_url=f"http://127.0.0.1:{stack.config.ingest.port}", timeout=20)


def _post(c: httpx.Client, body, path: str = "/v1/reports") -> httpx.Response:
    return c.post(path, content=orjson.dumps(body), headers=auth())


def _wait_ready(c: httpx.Client, timeout_s: float = 30) -> None:
    """Poll /readyz until 200, as an orchestrator would: a restarted Redis answers LOADING
    and a restarted broker has no metadata for a moment, and the gateway rightly says 503."""
    deadline = time.monotonic() + timeout_s
    while (resp := c.get("/readyz")).status_code != 200:
        check_problem(resp, 503, "not_ready")
        assert time.monotonic() < deadline, f"gateway not ready after {timeout_s}s: {resp.text}"
        time.sleep(0.1)


def _fsync_redis(stack) -> None:
    """Return once everything Redis has applied so far is fsynced to its append-only file.
    Pantau runs Redis with `appendfsync everysec`, so a SIGKILL may lose the last second;
    a write of our own followed by WAITAOF fences every earlier write."""
    with redis.Redis.from_url(stack.config.redis.url) as r:
        r.set("pantau:test:fence", "1")
        local, _ = r.execute_command("WAITAOF", 1, 0, 10_000)
        assert local == 1


def test_broker_down_is_503_then_the_same_report_is_accepted_once_back(own_stack):
    bootstrap = own_stack.config.kafka.bootstrap_servers
    r = report()
    with _client(own_stack) as c:
        own_stack.kill("broker")

        single = _post(c, r)
        batch = _post(c, {"reports": [report()]}, "/v1/reports:batch")
        ready = c.get("/readyz")

        assert "broker" in check_problem(single, 503, "unavailable")["message"]
        assert retry_after(single) >= 1
        check_problem(batch, 503, "unavailable")
        assert retry_after(batch) >= 1
        assert "broker" in check_problem(ready, 503, "not_ready")["message"]
        assert check_json(c.get("/healthz"), 200) == {"status": "ok"}  # alive, just not ready

        own_stack.restart("broker")
        ensure_topics(bootstrap, own_stack.config.kafka.partitions)  # Tansu keeps topics in memory only
        _wait_ready(c)

        # The refused attempt left no claim behind: the retry is new, not a duplicate.
        assert check_json(_post(c, r), 202) == {"event_id": r["event_id"], "status": "accepted"}
    assert on_topic(bootstrap, r)[r["event_id"]].key == b"65.71"
    assert copies_on_topic(bootstrap, r) == {r["event_id"]: 1}
    assert own_stack.crashed() == []


def test_redis_down_is_503_and_nothing_reaches_the_topic_then_accepted_once_back(own_stack):
    bootstrap = own_stack.config.kafka.bootstrap_servers
    before, r = report(), report()
    with _client(own_stack) as c:
        check_json(_post(c, before), 202)
        _fsync_redis(own_stack)
        own_stack.kill("redis")

        single = _post(c, r)
        batch = _post(c, {"reports": [r]}, "/v1/reports:batch")
        ready = c.get("/readyz")

        assert "state store" in check_problem(single, 503, "unavailable")["message"]
        assert retry_after(single) >= 1
        check_problem(batch, 503, "unavailable")
        assert retry_after(batch) >= 1
        assert "redis" in check_problem(ready, 503, "not_ready")["message"]
        # The broker was up the whole time, yet nothing was published without its claim.
        assert copies_on_topic(bootstrap, r) == {r["event_id"]: 0}

        own_stack.restart("redis")
        _wait_ready(c)

        assert check_json(_post(c, r), 202) == {"event_id": r["event_id"], "status": "accepted"}
        assert check_json(_post(c, r), 200) == {"event_id": r["event_id"], "status": "duplicate"}
        # Claims survive a Redis restart: what was accepted before is still a duplicate.
        assert check_json(_post(c, before), 200) == {"event_id": before["event_id"], "status": "duplicate"}
    assert copies_on_topic(bootstrap, before, r) == {before["event_id"]: 1, r["event_id"]: 1}
    assert own_stack.crashed() == []


def test_publisher_that_gave_up_during_a_broker_stall_can_retry_safely(own_stack):
    """A publisher whose request timed out does not know whether it was accepted; its retry
    must neither fail nor publish the report twice."""
    bootstrap = own_stack.config.kafka.bootstrap_servers
    broker = own_stack.children["broker"].proc
    r = report()
    with _client(own_stack) as c:
        check_json(_post(c, report()), 202)
        os.killpg(broker.pid, signal.SIGSTOP)
        try:
            with pytest.raises(httpx.TimeoutException):
                c.post("/v1/reports", content=orjson.dumps(r), headers=auth(), timeout=0.5)
        finally:
            os.killpg(broker.pid, signal.SIGCONT)
        retry = check_json(_post(c, r), 200)  # the first attempt went through after all
        assert retry == {"event_id": r["event_id"], "status": "duplicate"}
    assert copies_on_topic(bootstrap, r) == {r["event_id"]: 1}
