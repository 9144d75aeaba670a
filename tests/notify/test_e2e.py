"""The notify service end to end on the embedded stack (Tansu broker, Valkey, `python -m
services.notify` as a child process), fed with contract score updates straight on
`pantau.scores.v1`, paging contacts through a signed webhook to a real HTTP receiver.

  * siaga update → the kabupaten/kota on-call gets a signed `triggered` message;
  * no ack → after the wait, the province on-call gets `escalated` (step 1);
  * an ack through the API stops the escalation (a witness incident opened after the ack,
    on the same timings, proves step 2 came due and did not fire);
  * a level rise after the ack escalates again at once (to the awas step);
  * resolve → `resolved` to everyone who was paged; every lifecycle event on Kafka;
  * kill -9 between a step coming due and its delivery, restart → delivered exactly once.

Nothing here sleeps: each step waits on the receiver, the Kafka topic or the process.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson
import pytest

from cli.stack import EmbeddedStack, free_port, service
from shared import topics
from services.notify.fault_injection_for_tests import ENV as FAULT_ENV
from tests.conftest import write_config
from tests.notify.peers import HttpReceiver, Request, kaltara_people_yaml
from tests.utils import collect, fast_notify_section, produce, value

pytestmark = pytest.mark.slow

OP_TOKEN = "e2e-operator-token-kaltara"
HOOK_SECRET = "e2e-webhook-secret-0123456789-Mv3kQz"
WAIT_MIN = 0.03  # 1.8 s between steps
WITA = timezone(timedelta(hours=8))


ROTATIONS_YAML = """rotations:
  - region: "65.71"
    members: [kab-tarakan]
    handover: weekly
    handover_at: "08:00"
    start: 2024-11-04
  - region: "65"
    members: [prov-kaltara]
    start: 2024-11-04"""


def notify_yaml(receiver: str, port: int) -> str:
    return f"""
{kaltara_people_yaml(receiver, OP_TOKEN, HOOK_SECRET)}
policies:
  - id: kaltara
    match: {{region: "65"}}
    steps:
      - {{notify: ["oncall:kabkota"], wait_minutes: {WAIT_MIN}}}
      - {{notify: ["oncall:province"], wait_minutes: {WAIT_MIN}}}
      - {{notify: ["operators"], wait_minutes: {WAIT_MIN}}}
    level_steps: {{awas: 2}}
{ROTATIONS_YAML}
{fast_notify_section(port, "e2e-link-secret-0123456789abcdef")}"""


# Crash points (see services/notify/fault_injection_for_tests.py): notify kills itself with SIGKILL when
# step 1 of an incident of these categories is due, before submitting anything ("due") or
# after submitting its deliveries but before saving its state ("after_submit").
CRASHES = [("after_submit", "political_violence"), ("due", "communal_clash")]


def fault_spec(crashes: list[tuple[str, str]]) -> str:
    return ",".join(f"{point}:65.71-{category}-*/step:1:*" for point, category in crashes)


def start_notify(stack: EmbeddedStack, fault: str) -> None:
    old = stack.children.get("notify")
    if old is not None:
        old.stop()
    stack.children["notify"] = service("notify", stack.config_path, stack.logdir,
                                         {**stack.service_env, FAULT_ENV: fault}).start()
    stack.wait_ready("notify")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, hook: HttpReceiver) -> Iterator[EmbeddedStack]:
    tmp = tmp_path_factory.mktemp("notify-e2e")
    cfg = write_config(tmp / "pantau.yaml", notify_yaml(hook.url, free_port()))
    s = EmbeddedStack(cfg, tmp, ("notify",))
    try:
        s.start_infra()
        start_notify(s, fault_spec(CRASHES))
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    port = stack.config.notify["port"] if isinstance(stack.config.notify, dict) else stack.config.notify.port
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                      headers={"Authorization": f"Bearer {OP_TOKEN}"}) as c:
        yield c


def score(region: str, category: str, level: str, report_ids: list[str]) -> bytes:
    start = datetime.now(WITA).replace(hour=0, minute=0, second=0, microsecond=0)
    return orjson.dumps({
        "region_code": region, "category": category, "bucket_start": start.isoformat(),
        "bucket_end": (start + timedelta(days=1)).isoformat(), "observed": 7, "weighted": 7.0, "expected": 1.7,
        "upper": 3.3, "method": "ears-c2", "alarm": True, "level": level,
        "reasons": [f"7 laporan hari ini, perkiraan 1,7, batas atas 3,3 (EARS C2); level {level}"],
        "report_ids": report_ids, "computed_at": datetime.now(timezone.utc).isoformat(),
    })


def send_score(stack: EmbeddedStack, *updates: tuple[str, str, str, list[str]]) -> None:
    asyncio.run(produce(stack.config.kafka.bootstrap_servers, topics.SCORES_V1,
                        [score(*u) for u in updates], key=updates[0][0].encode()))


def body(r: Request) -> dict[str, Any]:
    return orjson.loads(r.body)


def test_escalation_ack_level_rise_and_resolve(stack: EmbeddedStack, api: httpx.Client, hook: HttpReceiver):
    cat = "election_dispute"
    send_score(stack, ("65.71", cat, "siaga", ["fkdm-kaltara:ev-1", "fkdm-kaltara:ev-2"]))

    # 1. the kabupaten/kota on-call is paged at once, signed, with the contract body
    first = hook.wait_page("kab", cat, "triggered")
    assert first.signed_by(HOOK_SECRET)
    assert first.headers["x-pantau-delivery"]
    b = body(first)
    assert list(b) == ["version", "incident_id", "status", "level", "region_code", "region_name", "category", "step",
                       "summary", "reasons", "report_ids", "ack_url", "opened_at", "updated_at"]
    assert (b["level"], b["region_code"], b["step"]) == ("siaga", "65.71", 0)
    assert b["report_ids"] == ["fkdm-kaltara:ev-1", "fkdm-kaltara:ev-2"] and "EARS C2" in b["reasons"][0]
    incident = b["incident_id"]
    assert b["ack_url"].startswith(str(api.base_url) + "/ack/")

    # a later update changes the same incident; it does not open another
    send_score(stack, ("65.71.02", cat, "siaga", ["fkdm-kaltara:ev-3"]))

    # 2. nobody acknowledges: after the wait, the province hears of it
    second = hook.wait_page("prov", cat, "escalated", step=1)
    assert body(second)["incident_id"] == incident
    listed = api.get("/v1/incidents", params={"status": "open", "category": cat}).json()["incidents"]
    assert [i["id"] for i in listed] == [incident]
    assert "fkdm-kaltara:ev-3" in listed[0]["report_ids"]

    # 3. an ack through the API stops it, and everyone paged hears who took it
    r = api.post(f"/v1/incidents/{incident}/ack", json={"note": "tim menuju lokasi"})
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    assert r.json()["escalation"]["next_at"] is None
    for who in ("kab", "prov"):
        hook.wait_page(who, cat, "acknowledged")
    # Witness: an incident opened now, on the same timings, reaches its step 1 only after
    # the acknowledged incident's step 2 came due. By then step 2 must not have fired.
    witness_cat = "hoax_disinformation"
    send_score(stack, ("65.71", witness_cat, "waspada", ["fkdm-kaltara:ev-w"]))
    hook.wait_page("prov", witness_cat, "escalated", step=1)
    assert hook.pages("ops", cat) == []
    timeline = api.get(f"/v1/incidents/{incident}").json()["timeline"]
    assert [e["step"] for e in timeline if e["kind"] == "step"] == [0, 1]

    # 4. the level rises after the ack: escalated again at once, to the awas step (operators)
    send_score(stack, ("65.71", cat, "awas", ["polda-kaltara:lp-9"]))
    rise = hook.wait_page("ops", cat, "escalated", step=2)
    assert body(rise)["level"] == "awas"
    assert api.get(f"/v1/incidents/{incident}").json()["status"] == "escalated"

    # 5. resolve: every one paged hears it, on the channel they were paged on
    r = api.post(f"/v1/incidents/{incident}/resolve", json={"note": "massa membubarkan diri"})
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    for who in ("kab", "prov", "ops"):
        assert body(hook.wait_page(who, cat, "resolved"))["incident_id"] == incident
    assert api.post(f"/v1/incidents/{incident}/resolve").status_code == 409

    # the timeline has every step, delivery and action
    timeline = api.get(f"/v1/incidents/{incident}").json()["timeline"]
    kinds = [e["kind"] for e in timeline]
    for k in ("opened", "step", "delivery", "acknowledged", "unacknowledged", "level", "resolved", "notified"):
        assert k in kinds, (k, kinds)
    delivered = {e["delivery_id"] for e in timeline if e["kind"] == "delivery" and e["outcome"] == "delivered"}
    assert first.headers["x-pantau-delivery"] in delivered

    # every lifecycle change is on pantau.escalations.v1, keyed by incident id
    wanted = ["triggered", "escalated", "acknowledged", "escalated", "resolved"]
    got = asyncio.run(collect(stack.config.kafka.bootstrap_servers, [topics.ESCALATIONS_V1],
                              lambda ms: [value(m)["status"] for m in ms][:5] == wanted, timeout_s=30,
                              where=lambda m: value(m)["incident_id"] == incident))
    assert all(m.key == incident.encode() for m in got)
    assert [value(m)["step"] for m in got][:5] == [0, 1, 1, 2, 2]

    # tidy up the witness so later tests see only their own incidents
    witness = hook.pages("prov", witness_cat)[0]
    assert api.post(f"/v1/incidents/{body(witness)['incident_id']}/resolve").status_code == 200


def test_an_incident_opened_at_awas_pages_every_level_up_to_the_awas_step_at_once(stack: EmbeddedStack,
                                                                                 api: httpx.Client, hook: HttpReceiver):
    # The policy's awas step is 2 (operators). Tarakan's own coordinator and the province's
    # have not been paged for this incident: they hear it in the same firing, not never.
    cat = "sara_incitement"
    send_score(stack, ("65.71", cat, "awas", ["polda-kaltara:lp-21"]))
    pages = {who: hook.wait_page(who, cat, "triggered", step=2) for who in ("kab", "prov", "ops")}
    incident = body(pages["kab"])["incident_id"]
    assert {body(p)["incident_id"] for p in pages.values()} == {incident}
    assert len({p.headers["x-pantau-delivery"] for p in pages.values()}) == 3
    steps = [e for e in api.get(f"/v1/incidents/{incident}").json()["timeline"] if e["kind"] == "step"]
    assert [(e["step"], e.get("with_steps")) for e in steps] == [(2, [0, 1])]
    assert "steps 0, 1, not paged yet, paged with it" in steps[0]["notes"][-1]
    assert api.post(f"/v1/incidents/{incident}/resolve").status_code == 200
    for who in ("kab", "prov", "ops"):
        hook.wait_page(who, cat, "resolved")


def test_kill_9_between_due_and_delivery_delivers_exactly_once(stack: EmbeddedStack, api: httpx.Client,
                                                               hook: HttpReceiver):
    for i, (point, category) in enumerate(CRASHES):
        child = stack.children["notify"]
        send_score(stack, ("65.71", category, "siaga", [f"fkdm-kaltara:{category}-1"]))
        hook.wait_page("kab", category, "triggered")
        assert child.proc.wait(timeout=60) == -9, point  # it died at the crash point, by SIGKILL
        start_notify(stack, fault_spec(CRASHES[i + 1:]))  # restart, without this crash point

        page = hook.wait_page("prov", category, "escalated", step=1)
        incident = body(page)["incident_id"]
        did = page.headers["x-pantau-delivery"]

        def settled() -> bool:
            tl = api.get(f"/v1/incidents/{incident}").json()["timeline"]
            steps = [e for e in tl if e["kind"] == "step" and e["step"] == 1]
            done = [e for e in tl if e["kind"] == "delivery" and e["delivery_id"] == did and e["outcome"] == "delivered"]
            return len(steps) == 1 and bool(done)

        hook.wait_for(lambda _: settled(), 30)
        # Exactly one delivery of step 1: one id (a repeat of the same id would be a retry the
        # receiver drops by X-Pantau-Delivery; a second id would be a second page).
        ids = {r.headers["x-pantau-delivery"] for r in hook.pages("prov", category, "escalated", step=1)}
        assert ids == {did}, point
        assert api.post(f"/v1/incidents/{incident}/resolve").status_code == 200


def test_bad_config_exits_2_naming_the_key(tmp_path: Path):
    import subprocess
    import sys

    cfg = write_config(tmp_path / "bad.yaml", """
contacts:
  - {id: a, name: A}
policies:
  - id: p
    steps: [{notify: ["contact:nobody"], wait_minutes: 5}]
notify:
  port: 8082
  colour: blue
""")
    p = subprocess.run([sys.executable, "-m", "services.notify"], env={"PANTAU_CONFIG": str(cfg), "PATH": ""},
                       capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert p.returncode == 2
    assert "notify.colour: unknown key" in p.stderr
    assert "Traceback" not in p.stderr
    cfg.write_text(cfg.read_text().replace("  colour: blue\n", ""))
    p = subprocess.run([sys.executable, "-m", "services.notify"], env={"PANTAU_CONFIG": str(cfg), "PATH": ""},
                       capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert p.returncode == 2 and "policies[0].steps[0].notify[0]: unknown contact 'nobody'" in p.stderr

