"""CAP 1.2 and the AsyncAPI document on the whole embedded stack (broker, Redis, ingest gateway
and validator, scoring, notify), with the report published by the reference Kafka publisher:

  * `pantau send --kafka` one severity-5 report in Kabupaten Bulungan (65.01) → the incident's
    CAP alert from the API validates against the OASIS XSD, is an Alert at awas with geocode
    65.01; the Atom feed lists it; the `cap` channel POSTed the same Alert, signed;
  * resolve through the API → the API's CAP is a Cancel referencing that Alert, and the `cap`
    channel POSTs a Cancel;
  * every message the run put on the six contract topics is valid against the payload schema
    docs/asyncapi.yaml gives its topic.

Nothing sleeps: each step waits on the receiver or the topic.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from lxml import etree

from cli.stack import EmbeddedStack, free_port
from pantau.webhook import SeenDeliveries, verify
from shared import topics
from tests.conftest import write_config
from tests.notify.peers import KALTARA_ROTATIONS_YAML, HttpReceiver, kaltara_people_yaml
from tests.notify.test_cap import ATOM, XSD, text
from tests.shared.test_asyncapi import DOC, payload_errors
from tests.utils import collect, fast_notify_section, produce, report, operator_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SERVICES = ("ingest-gateway", "ingest-validator", "scoring", "notify")
OP_TOKEN = "standards-operator-token-kaltara"
HOOK_SECRET = "standards-webhook-secret-0123456789-Qx"
LINK_SECRET = "standards-link-secret-0123456789abcdef"
CATEGORY = "communal_clash"
ROOT = Path(__file__).resolve().parents[2]


def config_yaml(receiver: str) -> str:
    return f"""
{kaltara_people_yaml(receiver, OP_TOKEN, HOOK_SECRET)}  - id: cap-bpbd
    type: cap
    url: "{receiver}/cap"
    secret: "{HOOK_SECRET}"
    timeout_s: 2
    backoff_initial_s: 0.05
    backoff_max_s: 0.2
policies:
  - id: bulungan
    match: {{region: "65.01"}}
    steps:
      - {{notify: ["oncall:province"], channels: [hook, cap-bpbd], wait_minutes: 60}}
{KALTARA_ROTATIONS_YAML}scoring:
  web_port: {free_port()}
  tick_interval_s: 1
{fast_notify_section(free_port(), LINK_SECRET)}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, hook: HttpReceiver) -> Iterator[EmbeddedStack]:
    tmp = tmp_path_factory.mktemp("standards")
    with EmbeddedStack(write_config(tmp / "pantau.yaml", config_yaml(hook.url)), tmp, SERVICES) as s:
        yield s


def cap_posts(hook: HttpReceiver, msg_type: str) -> list[Any]:
    out = []
    for r in hook.requests:
        if r.path == "/cap" and r.status == 200 and text(etree.fromstring(r.body), "/c:alert/c:msgType") == [msg_type]:
            out.append(r)
    return out


def test_a_severity_5_report_gives_a_valid_cap_alert_feed_entry_and_cancel(stack: EmbeddedStack, hook: HttpReceiver,
                                                                          tmp_path: Path):
    bootstrap = stack.config.kafka.bootstrap_servers
    rep = report(region_code="65.01", category=CATEGORY, severity=5, casualties=3, title="Bentrok antarwarga di Tanjung Selor")
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(rep) + "\n")
    sent = subprocess.run([sys.executable, "-m", "cli.main", "send", str(f), "--kafka", bootstrap],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert sent.returncode == 0, sent.stdout + sent.stderr

    hook.wait_for(lambda _: bool(cap_posts(hook, "Alert")), 90)
    api = operator_client(stack, OP_TOKEN)
    with api:
        (inc,) = api.get("/v1/incidents", params={"region": "65.01", "category": CATEGORY}).json()["incidents"]
        r = api.get(f"/v1/cap/{inc['id']}.xml")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/cap+xml")
        alert = etree.fromstring(r.content)
        assert XSD.validate(alert), XSD.error_log
        assert text(alert, "/c:alert/c:msgType") == ["Alert"]
        assert set(text(alert, "//c:area/c:geocode/c:value")) == {"65.01"}
        assert set(text(alert, "//c:area/c:areaDesc")) == {"Kabupaten Bulungan"}
        assert set(text(alert, "//c:info/c:severity")) == {"Extreme"}  # awas
        alert_id = text(alert, "/c:alert/c:identifier")[0]

        feed = etree.fromstring(api.get("/v1/cap/feed.atom").content)
        assert alert_id in [e.text for e in feed.xpath("//a:entry/a:id", namespaces=ATOM)]

        (pushed,) = cap_posts(hook, "Alert")
        assert pushed.headers["content-type"] == "application/cap+xml"
        verify(HOOK_SECRET, pushed.body, pushed.headers["x-pantau-signature"], pushed.headers["x-pantau-delivery"],
               SeenDeliveries())
        pushed_alert = etree.fromstring(pushed.body)
        assert XSD.validate(pushed_alert), XSD.error_log
        assert text(pushed_alert, "/c:alert/c:identifier") == [alert_id]  # one Alert, one identifier

        assert api.post(f"/v1/incidents/{inc['id']}/resolve", json={"note": "situasi kondusif"}).status_code == 200
        cancel = etree.fromstring(api.get(f"/v1/cap/{inc['id']}.xml").content)
        assert XSD.validate(cancel), XSD.error_log
        assert text(cancel, "/c:alert/c:msgType") == ["Cancel"]
        assert alert_id in text(cancel, "/c:alert/c:references")[0]
    hook.wait_for(lambda _: bool(cap_posts(hook, "Cancel")), 60)
    assert XSD.validate(etree.fromstring(cap_posts(hook, "Cancel")[0].body))

    # A message that is no report, for the DLQ.
    asyncio.run(produce(bootstrap, topics.REPORTS_RAW, [b'{"event_id": "no-good"}']))

    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))

    def seen(topic: str, enough) -> list[dict[str, Any]]:
        msgs = asyncio.run(collect(bootstrap, [topic], lambda got: enough([json.loads(m.value) for m in got])))
        return [json.loads(m.value) for m in msgs]

    records = {
        topics.REPORTS_RAW: seen(topics.REPORTS_RAW, lambda v: any(x.get("event_id") == rep["event_id"] for x in v)),
        topics.REPORTS_V1: seen(topics.REPORTS_V1, lambda v: any(x.get("event_id") == rep["event_id"] for x in v)),
        topics.REPORTS_DLQ: seen(topics.REPORTS_DLQ, lambda v: len(v) >= 1),
        topics.SCORES_V1: seen(topics.SCORES_V1, lambda v: any(x.get("region_code") == "65.01" for x in v)),
        topics.ESCALATIONS_V1: seen(topics.ESCALATIONS_V1,
                                    lambda v: {"triggered", "resolved"} <= {x.get("status") for x in v}),
        topics.NOTIFICATIONS_V1: seen(topics.NOTIFICATIONS_V1,
                                      lambda v: {"webhook", "cap"} <= {x.get("channel_type") for x in v}),
    }
    for topic, values in records.items():
        if topic == topics.REPORTS_RAW:
            values = [v for v in values if v.get("event_id") == rep["event_id"]]  # the DLQ's bad one is not a report
        for v in values:
            assert payload_errors(doc, topic, v) == [], (topic, v)
