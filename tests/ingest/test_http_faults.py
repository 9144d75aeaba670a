"""The ingest gateway when the broker or Redis is gone or stalls (contract: 503 with
Retry-After, and no report half-accepted), and once they are back; each test on a private
stack it may break."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest
import redis

from services.ingest.state import dedup_key
from shared.kafka import ensure_topics
from tests.ingest.test_http import _fire, check_json, check_problem, copies_on_topic, on_topic, retry_after
from tests.utils import auth, report, wait_for

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

        assert "broker" in check_problem(single, 503, "unavailable")["detail"]
        assert retry_after(single) >= 1
        check_problem(batch, 503, "unavailable")
        assert retry_after(batch) >= 1
        assert "broker" in check_problem(ready, 503, "not_ready")["detail"]
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

        assert "state store" in check_problem(single, 503, "unavailable")["detail"]
        assert retry_after(single) >= 1
        check_problem(batch, 503, "unavailable")
        assert retry_after(batch) >= 1
        assert "redis" in check_problem(ready, 503, "not_ready")["detail"]
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


def _maybe_accepted(resp: httpx.Response) -> str:
    """A 503 after an ambiguous failure: it must not claim that nothing was accepted."""
    message = check_problem(resp, 503, "unavailable")["detail"]
    assert "may have been accepted" in message and "nothing was accepted" not in message, message
    assert retry_after(resp) >= 1
    return message


def test_broker_paused_mid_produce_is_503_and_racing_retries_publish_each_report_once(own_stack):
    """The produce times out while the broker is stopped, with the request in its socket
    buffer; the broker appends it when continued. The retries (two at the same instant, sent
    as soon as the broker runs again, racing that append) must find that copy, not write
    another, and exactly one of them answers `accepted`."""
    bootstrap = own_stack.config.kafka.bootstrap_servers
    broker = own_stack.children["broker"].proc
    single, pair = report(), [report(), report(region_code="65.01.01")]
    with _client(own_stack) as c:
        check_json(_post(c, report()), 202)  # connected, metadata known: only the produce stalls
        os.killpg(broker.pid, signal.SIGSTOP)
        try:
            first = _post(c, single)
            first_batch = _post(c, {"reports": pair}, "/v1/reports:batch")
        finally:
            os.killpg(broker.pid, signal.SIGCONT)
        assert "broker" in _maybe_accepted(first)
        _maybe_accepted(first_batch)

        retries = asyncio.run(_fire(str(c.base_url), [("/v1/reports", orjson.dumps(single))] * 2
                                    + [("/v1/reports:batch", orjson.dumps({"reports": pair}))] * 2))
    answers = sorted((resp.status_code, check_json(resp, resp.status_code)["status"]) for resp in retries[:2])
    assert answers == [(200, "duplicate"), (202, "accepted")]
    per_report = {r["event_id"]: [] for r in pair}
    for resp in retries[2:]:
        for x in check_json(resp, 200)["results"]:
            per_report[x["event_id"]].append(x["status"])
    assert {e: sorted(s) for e, s in per_report.items()} == {r["event_id"]: ["accepted", "duplicate"] for r in pair}
    assert copies_on_topic(bootstrap, single, *pair) == {r["event_id"]: 1 for r in (single, *pair)}
    assert own_stack.crashed() == []


def test_redis_failing_after_the_broker_acknowledged_is_503_and_the_retry_is_accepted_once(own_stack):
    """The broker has the report but Redis is gone before the claim is marked accepted: the
    claim (on disk) comes back with Redis, the retry waits for its lease to run out, finds the
    report on the topic and answers `accepted` without publishing it again."""
    bootstrap = own_stack.config.kafka.bootstrap_servers
    broker = own_stack.children["broker"].proc
    r = report()
    key = dedup_key(r["source"], r["event_id"])
    with _client(own_stack) as c, ThreadPoolExecutor(1) as pool:
        check_json(_post(c, report()), 202)
        os.killpg(broker.pid, signal.SIGSTOP)
        try:
            pending = pool.submit(_post, c, r)
            # Claimed, so its produce is waiting on the stopped broker: kill Redis (the claim
            # fsynced first), then let the broker acknowledge. Marking it accepted then fails.
            with redis.Redis.from_url(own_stack.config.redis.url) as red:
                wait_for("the claim", lambda: red.exists(key))
            _fsync_redis(own_stack)
            own_stack.kill("redis")
        finally:
            os.killpg(broker.pid, signal.SIGCONT)
        assert "state store" in _maybe_accepted(pending.result())
        on_topic(bootstrap, r)  # published all the same

        own_stack.restart("redis")
        _wait_ready(c)
        assert check_json(_post(c, r), 202) == {"event_id": r["event_id"], "status": "accepted"}
        assert check_json(_post(c, r), 200) == {"event_id": r["event_id"], "status": "duplicate"}
    assert copies_on_topic(bootstrap, r) == {r["event_id"]: 1}
    assert own_stack.crashed() == []
