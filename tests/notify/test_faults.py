"""Notify under faults, on the embedded stack (Tansu, Valkey with append-only persistence, and
`python -m services.notify` kept running by a supervisor as `pantau up` keeps it), fed with
contract score updates on `pantau.scores.v1`, paging through a signed webhook to a real
HTTP receiver whose own log is the judge:

  * Redis stopped in the middle of an escalation (step 0 paged, step 1 pending) and started
    again on the same port and data directory: step 1 still fires, exactly once, and the
    receiver never gets a delivery id twice;
  * notify killed with SIGKILL while it retries deliveries the receiver refuses (500), then
    the receiver accepts: every delivery arrives, each exactly once.

test_e2e.py covers kill -9 at the scheduler's crash points and test_delivery.py a bare
delivery worker lost mid-send; these cover Redis itself going away and the whole service
dying between retries.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import orjson
import pytest

from cli.stack import EmbeddedStack, free_port
from shared import topics
from tests.conftest import write_config
from tests.notify.peers import KALTARA_ROTATIONS_YAML, Answer, HttpReceiver, Request, kaltara_people_yaml
from tests.utils import collect, fast_notify_section, operator_client, produce, value, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

OP_TOKEN = "faults-operator-token-kaltara"
HOOK_SECRET = "faults-webhook-secret-0123456789"
WITA = timezone(timedelta(hours=8))
RESTART_CAT = "land_resource_conflict"  # the Redis-restart incident
RETRY_CAT = "mass_mobilization"  # the kill -9 incident
OUTAGE_CAT = "hoax_disinformation"  # an update that arrives while Redis is down
STEP_WAIT_MIN = 0.15  # 9 s from step 0 to step 1: time to stop Redis while step 1 is pending
LONG_MIN = 30  # steps after the one under test never come due during the test


def faults_yaml(receiver: str, port: int) -> str:
    return f"""
# enough attempts that the receiver's refusals never dead-letter a delivery here
{kaltara_people_yaml(receiver, OP_TOKEN, HOOK_SECRET, max_attempts=40, backoff_max_s=0.3)}
policies:
  - id: restart
    match: {{region: "65.71", categories: [{RESTART_CAT}]}}
    steps:
      - {{notify: ["oncall:kabkota"], wait_minutes: {STEP_WAIT_MIN}}}
      - {{notify: ["oncall:province"], wait_minutes: {LONG_MIN}}}
      - {{notify: ["operators"], wait_minutes: {LONG_MIN}}}
  - id: outage
    match: {{region: "65.71", categories: [{OUTAGE_CAT}]}}
    steps:
      - {{notify: ["oncall:kabkota"], wait_minutes: {LONG_MIN}}}
  - id: retry
    match: {{region: "65.71", categories: [{RETRY_CAT}]}}
    steps:
      - {{notify: ["oncall:kabkota", "contact:piket-ops"], wait_minutes: {LONG_MIN}}}
      - {{notify: ["oncall:province"], wait_minutes: {LONG_MIN}}}
{KALTARA_ROTATIONS_YAML}{fast_notify_section(port, "faults-link-secret-0123456789abcdef")}"""


class Supervisor:
    """Restarts notify whenever it exits, as `pantau up` does (a crash-looping child waits a
    second between starts). Waits on the process itself, so it polls nothing."""

    def __init__(self, stack: EmbeddedStack):
        self.stack = stack
        self.cond = threading.Condition()
        self.restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-supervisor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            child = self.stack.children["notify"]
            started = time.monotonic()
            assert child.proc is not None
            child.proc.wait()
            if self._stopping.is_set():
                return
            if time.monotonic() - started < 1 and self._stopping.wait(1):
                return
            self.stack.start_service("notify", wait=False)
            with self.cond:
                self.restarts += 1
                self.cond.notify_all()

    def wait_restarted(self, after: int, timeout: float = 30) -> None:
        """Block until notify was restarted more than `after` times and listens again."""
        with self.cond:
            assert self.cond.wait_for(lambda: self.restarts > after, timeout), "notify was not restarted"
        self.stack.wait_ready("notify")

    def stop(self) -> None:
        self._stopping.set()
        self.stack.children["notify"].stop()
        self._thread.join(15)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, hook: HttpReceiver) -> Iterator[EmbeddedStack]:
    tmp = tmp_path_factory.mktemp("notify-faults")
    with EmbeddedStack(write_config(tmp / "pantau.yaml", faults_yaml(hook.url, free_port())), tmp, ("notify",)) as s:
        yield s


@pytest.fixture(scope="module")
def supervisor(stack: EmbeddedStack) -> Iterator[Supervisor]:
    sup = Supervisor(stack)
    yield sup
    sup.stop()


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with operator_client(stack, OP_TOKEN) as c:
        yield c


def send_score(stack: EmbeddedStack, category: str, level: str = "siaga") -> None:
    start = datetime.now(WITA).replace(hour=0, minute=0, second=0, microsecond=0)
    update = orjson.dumps({
        "region_code": "65.71", "category": category, "bucket_start": start.isoformat(),
        "bucket_end": (start + timedelta(days=1)).isoformat(), "observed": 7, "weighted": 7.0, "expected": 1.7,
        "upper": 3.3, "method": "ears-c2", "alarm": True, "level": level,
        "reasons": ["7 laporan hari ini, perkiraan 1,7, batas atas 3,3 (EARS C2)"],
        "report_ids": [f"fkdm-kaltara:{category}-1"], "computed_at": datetime.now(timezone.utc).isoformat(),
    })
    asyncio.run(produce(stack.config.kafka.bootstrap_servers, topics.SCORES_V1, [update], key=b"65.71"))


def body(r: Request) -> dict[str, Any]:
    return orjson.loads(r.body)


def about(hook: HttpReceiver, category: str) -> list[Request]:
    return [r for r in hook.requests if body(r)["category"] == category]


def ok(r: Request) -> bool:
    return r.status is not None and 200 <= r.status < 300


BURST = 16


def burst(api: httpx.Client, path: str) -> list[int]:
    """Status codes of BURST concurrent GETs: enough at once to use many pooled connections."""
    with ThreadPoolExecutor(BURST) as pool:
        return list(pool.map(lambda _: api.get(path).status_code, range(BURST)))


def timeline(api: httpx.Client, incident: str) -> list[dict[str, Any]]:
    return api.get(f"/v1/incidents/{incident}").json()["timeline"]


def wait_recorded(stack: EmbeddedStack, delivery_ids: set[str], timeout: float = 30) -> None:
    """Wait until notify has recorded each delivery as delivered: its outcome event is on
    `pantau.notifications.v1`, which the outbox publishes only after Redis holds the record."""
    asyncio.run(collect(stack.config.kafka.bootstrap_servers, [topics.NOTIFICATIONS_V1],
                        lambda ms: {value(m)["delivery_id"] for m in ms} >= delivery_ids, timeout,
                        where=lambda m: value(m)["delivery_id"] in delivery_ids and value(m)["outcome"] == "delivered"))


def test_redis_restart_mid_escalation_fires_the_next_step_exactly_once(stack: EmbeddedStack, supervisor: Supervisor,
                                                                      api: httpx.Client, hook: HttpReceiver):
    cat = RESTART_CAT
    send_score(stack, cat)
    first = hook.wait_page("kab", cat, "triggered", step=0)
    incident = body(first)["incident_id"]
    # Stop Redis only once step 0's delivery is recorded, so no attempt is in flight: an
    # attempt whose answer came back while Redis was gone would be sent again (the same id,
    # which the receiver would drop), and this test is about timers and state, not that.
    wait_recorded(stack, {first.headers["x-pantau-delivery"]})
    inc = api.get(f"/v1/incidents/{incident}").json()
    next_at = inc["escalation"]["next_at"]
    assert inc["escalation"]["next_step"] == 1 and next_at is not None, inc["escalation"]
    assert hook.pages("prov", cat, "escalated") == []

    burst(api, f"/v1/incidents/{incident}")  # notify now holds a pool of Redis connections
    restarts = supervisor.restarts
    stack.children["redis"].stop()  # SIGTERM: Valkey writes its append-only file and leaves
    readiness = wait_for("/readyz answering 503", lambda: (r := api.get("/readyz")).status_code == 503 and r, timeout_s=30)
    assert "redis unreachable" in readiness.json()["detail"]
    # Redis stays down until step 1 is due by the incident's own timer, so the firing can only
    # happen from the state read back from the append-only file after the restart. This wait
    # sets how long the fault lasts; nothing is concluded from it.
    # An update that comes meanwhile waits in the consumer, offsets uncommitted, for Redis.
    send_score(stack, OUTAGE_CAT)
    due = datetime.fromisoformat(next_at.replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, due - time.time()) + 0.5)
    stack.start_redis()  # the same port and data directory
    # The connections pooled before the restart are all dead: none may surface as an error.
    assert burst(api, f"/v1/incidents/{incident}") == [200] * BURST
    assert api.get("/readyz").status_code == 200

    second = hook.wait_page("prov", cat, "escalated", step=1)
    assert body(second)["incident_id"] == incident
    assert second.signed_by(HOOK_SECRET)
    hook.wait_page("kab", OUTAGE_CAT, "triggered", step=0)
    # notify rode the outage out: no loop gave up and left the restart to a supervisor
    assert supervisor.restarts == restarts and stack.children["notify"].alive

    r = api.post(f"/v1/incidents/{incident}/resolve", json={"note": "selesai"})
    assert r.status_code == 200, r.text
    for who in ("kab", "prov"):
        hook.wait_page(who, cat, "resolved")

    # Step 1 fired once: one timeline entry, one message to the province.
    steps = [e["step"] for e in timeline(api, incident) if e["kind"] == "step"]
    assert steps == [0, 1]
    assert len([r for r in about(hook, cat) if body(r)["status"] == "escalated"]) == 1
    # The receiver's own log: no delivery id arrived twice, none went to the operators.
    seen = Counter(r.headers["x-pantau-delivery"] for r in about(hook, cat))
    assert all(n == 1 for n in seen.values()), seen
    assert len(seen) == 4  # triggered (kab), escalated (prov), resolved (kab, prov)
    assert [r.path for r in about(hook, cat) if r.path == "/ops"] == []


def test_kill_9_during_retries_delivers_each_delivery_exactly_once(stack: EmbeddedStack, supervisor: Supervisor,
                                                                    api: httpx.Client, hook: HttpReceiver):
    cat = RETRY_CAT
    refusing = threading.Event()
    refusing.set()

    def respond(req: Request) -> Answer:
        # The receiver is down for this incident's messages (500) until told otherwise.
        if refusing.is_set() and body(req)["category"] == cat:
            return Answer(500, b'{"error": "unavailable"}', {"Content-Type": "application/json"})
        return Answer()

    hook.respond = respond  # type: ignore[method-assign]
    try:
        send_score(stack, cat)

        def refused(reqs: list[Request]) -> Counter:
            return Counter(r.headers["x-pantau-delivery"] for r in reqs
                           if r.status == 500 and body(r)["category"] == cat)

        # Two deliveries (the kabupaten/kota on-call and the operator contact), each refused twice.
        hook.wait_for(lambda reqs: len(refused(reqs)) == 2 and min(refused(reqs).values()) >= 2, 60)
        restarts = supervisor.restarts
        stack.kill("notify")  # SIGKILL, in the middle of the retries
        before = refused(hook.requests)
        supervisor.wait_restarted(restarts)
        # The restarted service takes the retries up again: each delivery is refused once more.
        hook.wait_for(lambda reqs: all(refused(reqs)[d] > before[d] for d in before), 60)
        refusing.clear()

        hook.wait_for(lambda _: all(hook.delivered(d) for d in before), 60)
        wait_recorded(stack, set(before))
        incident = body(about(hook, cat)[0])["incident_id"]
    finally:
        hook.respond = lambda req: Answer()  # type: ignore[method-assign]

    # Every request of a delivery carried the same signed body, and exactly one was accepted.
    reqs = about(hook, cat)
    assert {r.headers["x-pantau-delivery"] for r in reqs} == set(before)
    for d in before:
        mine = [r for r in reqs if r.headers["x-pantau-delivery"] == d]
        assert len({r.body for r in mine}) == 1
        assert all(r.signed_by(HOOK_SECRET) for r in mine)
        assert [r.status for r in mine if ok(r)] == [200], [r.status for r in mine]
    assert sorted(r.path for r in reqs if ok(r)) == ["/kab", "/ops"]
    assert api.post(f"/v1/incidents/{incident}/resolve").status_code == 200
