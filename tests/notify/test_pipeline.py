"""The whole pipeline on the embedded stack: a report posted over HTTP to the ingest gateway
goes through the validator and the scoring worker to notify, which pages people through a
signed webhook to a real HTTP receiver; and the one-tap ack page from such a message, driven
in a real headless Chromium.

  * one severity-5 report → the kabupaten/kota on-call gets a signed `triggered` message at
    `awas` naming the report; no ack → the province after the wait; an ack through the API
    stops the escalation; resolve → `resolved` to everyone paged;
  * the ack page in Chromium: the incident with one button; a click acknowledges (the API
    says so and the escalation stops); the same link again says it is already acknowledged;
    an expired or tampered link answers a clear error page.

Nothing here sleeps: each step waits on the receiver. That an escalation *stopped* is shown by
a witness: an incident opened after the ack, on a policy whose first wait equals the wait the
acknowledged incident was in, reaches its next step only after that step came due.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson
import pytest

from cli.stack import EmbeddedStack, free_port
from services.notify.links import make_token
from services.notify.messages import category_name
from tests.conftest import write_config
from tests.deploy import in_ci
from tests.notify.peers import KALTARA_ROTATIONS_YAML, HttpReceiver, Request, kaltara_people_yaml
from tests.utils import auth, fast_notify_section, report, operator_client, gateway_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SERVICES = ("ingest-gateway", "ingest-validator", "scoring", "notify")
OP_TOKEN = "pipeline-operator-token-kaltara"
HOOK_SECRET = "pipeline-webhook-secret-0123456789"
LINK_SECRET = "pipeline-link-secret-0123456789abcdef"
# Short waits keep the test quick. The second wait is long enough for the test to act (ack,
# click in a browser) before the step after it comes due, even on a busy machine.
SHORT_MIN = 0.03  # 1.8 s
LONG_MIN = 0.15  # 9 s
FAST_CATEGORY = "communal_clash"  # the pipeline test's incident: the policy with the short first wait


def pipeline_yaml(receiver: str) -> str:
    notify_port = free_port()
    return f"""
{kaltara_people_yaml(receiver, OP_TOKEN, HOOK_SECRET)}
# Only Kota Tarakan pages: a province score the rollup may write opens no second paging flow.
policies:
  - id: tarakan-fast
    match: {{region: "65.71", categories: [{FAST_CATEGORY}]}}
    steps:
      - {{notify: ["oncall:kabkota"], wait_minutes: {SHORT_MIN}}}
      - {{notify: ["oncall:province"], wait_minutes: {LONG_MIN}}}
      - {{notify: ["operators"], wait_minutes: {LONG_MIN}}}
  - id: tarakan
    match: {{region: "65.71"}}
    steps:
      - {{notify: ["oncall:kabkota"], wait_minutes: {LONG_MIN}}}
      - {{notify: ["oncall:province"], wait_minutes: {LONG_MIN}}}
{KALTARA_ROTATIONS_YAML}scoring:
  web_port: {free_port()}
  tick_interval_s: 1
{fast_notify_section(notify_port, LINK_SECRET)}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, hook: HttpReceiver) -> Iterator[EmbeddedStack]:
    tmp = tmp_path_factory.mktemp("pipeline")
    with EmbeddedStack(write_config(tmp / "pantau.yaml", pipeline_yaml(hook.url)), tmp, SERVICES) as s:
        yield s


@pytest.fixture(scope="module")
def gateway(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with gateway_client(stack) as c:
        yield c


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with operator_client(stack, OP_TOKEN) as c:
        yield c


def post_report(gateway: httpx.Client, category: str, **fields: Any) -> str:
    """One severity-5 report from Kota Tarakan over HTTP; returns its event id once accepted."""
    body = report(region_code="65.71.02", category=category, severity=5, title="Bentrok dua kelompok warga",
                  **fields)
    r = gateway.post("/v1/reports", content=orjson.dumps(body), headers=auth())
    assert r.status_code == 202 and r.json() == {"event_id": body["event_id"], "status": "accepted"}, r.text
    return body["event_id"]


def body(r: Request) -> dict[str, Any]:
    return orjson.loads(r.body)


def open_witness(gateway: httpx.Client, hook: HttpReceiver, category: str) -> Request:
    """Open an incident on the `tarakan` policy (first wait LONG_MIN) and wait for its step 1.

    Opened after an ack, it reaches step 1 only after the acknowledged incident's next step
    (also LONG_MIN after a firing that came before the ack) came due: if that step were going
    to fire, it has fired by now."""
    post_report(gateway, category)
    return hook.wait_page("prov", category, "escalated", step=1)


# --------------------------------------------------------------------------- the pipeline


def wait_metric(stack: EmbeddedStack, name: str, timeout_s: float = 30) -> float:
    """The value of an unlabelled sample on notify's /metrics (on notify.metrics_port), once it
    is there and above 0 (the delivery is recorded just after the receiver answers, so poll)."""
    deadline = time.monotonic() + timeout_s
    metrics_url = f"http://127.0.0.1:{stack.config.notify.metrics_port}/metrics"
    while time.monotonic() < deadline:
        for line in httpx.get(metrics_url, timeout=10).text.splitlines():
            if line.startswith(name + " ") and float(line.split()[1]) > 0:
                return float(line.split()[1])
        time.sleep(0.1)
    raise AssertionError(f"{name} stayed 0 or absent for {timeout_s}s")


def test_report_over_http_pages_escalates_stops_on_ack_and_resolves(stack: EmbeddedStack, gateway: httpx.Client,
                                                                    api: httpx.Client, hook: HttpReceiver):
    cat = FAST_CATEGORY
    event_id = post_report(gateway, cat)

    # 1. the kabupaten/kota on-call gets a signed `triggered` message at awas naming the report
    first = hook.wait_page("kab", cat, "triggered")
    assert first.signed_by(HOOK_SECRET)
    assert not first.signed_by("another-secret-entirely-0000000")
    b = body(first)
    assert (b["version"], b["level"], b["region_code"], b["step"]) == ("1", "awas", "65.71", 0)
    assert event_id in b["report_ids"]
    assert b["reasons"] and b["ack_url"].startswith(f"http://127.0.0.1:{stack.config.notify.port}/ack/")
    incident = b["incident_id"]
    # ...and notify measured it from ingest's receipt of the report to this delivery, once.
    assert wait_metric(stack, "pantau_end_to_end_seconds_count") >= 1
    # ...on notify.metrics_port only: the public port the ack links point at has no /metrics.
    assert api.get("/metrics").status_code == 404

    # 2. nobody acknowledges: after the wait, the province on-call is paged for the same incident
    second = hook.wait_page("prov", cat, "escalated", step=1)
    assert second.signed_by(HOOK_SECRET)
    assert body(second)["incident_id"] == incident and body(second)["level"] == "awas"

    # 3. an ack through the notify API stops the escalation
    r = api.post(f"/v1/incidents/{incident}/ack", json={"note": "tim menuju lokasi"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "acknowledged" and r.json()["escalation"]["next_at"] is None
    for who in ("kab", "prov"):
        hook.wait_page(who, cat, "acknowledged")
    open_witness(gateway, hook, "hoax_disinformation")
    assert hook.pages("ops", cat) == [], "step 2 fired after the ack"
    steps = [e["step"] for e in api.get(f"/v1/incidents/{incident}").json()["timeline"] if e["kind"] == "step"]
    assert steps == [0, 1]

    # 4. resolve: everyone who was paged hears it, and nobody else
    r = api.post(f"/v1/incidents/{incident}/resolve", json={"note": "situasi kondusif"})
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    for who in ("kab", "prov"):
        resolved = hook.wait_page(who, cat, "resolved")
        assert body(resolved)["incident_id"] == incident
        assert resolved.signed_by(HOOK_SECRET)
    assert hook.pages("ops", cat) == []
    # one message per lifecycle event and person: the receiver never saw a delivery id twice
    ids = [r.headers["x-pantau-delivery"] for r in hook.requests if body(r)["incident_id"] == incident]
    assert len(ids) == len(set(ids)) == 6  # triggered, escalated, 2 × acknowledged, 2 × resolved
    # End to end is timed at an incident's first delivered page only: this one's and the witness's.
    assert wait_metric(stack, "pantau_end_to_end_seconds_count") == 2


# --------------------------------------------------------------------------- the ack page in Chromium

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def require_chromium() -> str:
    """Debian's chromium; without it, skip locally but fail under CI=true (.ci/run installs it)."""
    if Path(CHROMIUM).exists() or shutil.which("chromium"):
        return CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium"))
    why = "`chromium` is not installed (Debian package `chromium`: apt-get install -y --no-install-recommends chromium)"
    if in_ci():
        pytest.fail(f"{why}; CI must install it (.ci/run does)")
    pytest.skip(why)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    """A page in a fresh headless Chromium profile. Playwright drives the system Chromium and
    never downloads a browser of its own."""
    exe = require_chromium()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="pantau-chromium-")
    try:
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(profile, executable_path=exe, headless=True,
                                                       args=CHROMIUM_ARGS, locale="id-ID")
            try:
                yield ctx.pages[0] if ctx.pages else ctx.new_page()
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_ack_page_in_a_real_browser(stack: EmbeddedStack, gateway: httpx.Client, api: httpx.Client,
                                    hook: HttpReceiver, browser_page: Any):
    page = browser_page
    cat = "political_violence"
    post_report(gateway, cat)
    msg = body(hook.wait_page("kab", cat, "triggered"))
    incident, ack_url = msg["incident_id"], msg["ack_url"]

    # Opening the link shows the incident (region, category, level) and one button, and
    # acknowledges nothing by itself (link previews open it too).
    resp = page.goto(ack_url)
    assert resp is not None and resp.status == 200
    text = page.inner_text("body")
    assert msg["region_name"] in text and category_name(cat, "id") in text and "AWAS" in text
    assert page.locator("button").count() == 1 and page.locator("form[method=post]").count() == 1
    assert api.get(f"/v1/incidents/{incident}").json()["status"] == "triggered"

    # One tap acknowledges it, as the contact the message was sent to.
    with page.expect_navigation() as nav:
        page.get_by_role("button").click()
    done = nav.value
    assert done is not None and done.status == 200 and done.request.method == "POST"
    assert "Terima kasih" in page.inner_text("body") and page.locator("button").count() == 0
    inc = api.get(f"/v1/incidents/{incident}").json()
    assert inc["status"] == "acknowledged" and inc["acknowledged_by"] == "contact:kab-tarakan"
    assert inc["escalation"]["next_at"] is None

    # The escalation stopped: the province is never paged for it.
    hook.wait_page("kab", cat, "acknowledged")
    open_witness(gateway, hook, "security_threat")
    assert hook.pages("prov", cat, "escalated") == [], "step 1 fired after the ack"

    # The same link again: already acknowledged, no button.
    resp = page.goto(ack_url)
    assert resp is not None and resp.status == 200
    text = page.inner_text("body")
    assert "sudah dikonfirmasi" in text and "contact:kab-tarakan" in text and page.locator("button").count() == 0

    # An expired link (signed with the service's key, expiry past) and a tampered one (a
    # character of the signature changed): a clear error page with its status, no traceback.
    base, token = ack_url.rsplit("/ack/", 1)
    expired = make_token(LINK_SECRET.encode(), incident, time.time() - 60, contact="kab-tarakan")
    payload, mac = token.split(".")
    tampered = f"{payload}.{('A' if mac[0] != 'A' else 'B') + mac[1:]}"
    for bad, status, words in ((expired, 403, "expired"), (tampered, 403, "not genuine"),
                               ("not-a-token", 403, "not a Pantau acknowledgement link")):
        resp = page.goto(f"{base}/ack/{bad}")
        assert resp is not None and resp.status == status, bad
        text = page.inner_text("body")
        assert "Tautan tidak dapat dipakai" in text and words in text, text
        assert "Traceback" not in page.content() and page.locator("button").count() == 0

    assert api.post(f"/v1/incidents/{incident}/resolve").status_code == 200
