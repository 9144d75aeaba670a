"""Report decisions from the operators' console on the embedded stack (issue 19): an unverified
severity-4 report in Kabupaten Bulungan opens a siaga incident; in a real headless Chromium at
phone width the operator clicks Verifikasi beside the report, and the live scorer counts it at
full weight, naming the operator, and the incident's timeline says "diverifikasi oleh …"; then
Tolak: the report leaves the cell, the level falls at once (no hysteresis wait) and the
incident resolves. Forms without the session or its CSRF token are refused. Screenshots go
to var/test-artifacts/console/ (gitignored)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from cli.stack import EmbeddedStack, free_port
from tests.conftest import write_config
from tests.notify.test_pipeline import browser_page  # noqa: F401  (fixture)
from tests.scoring.conftest import of, post, scores
from tests.scoring.test_service import now_local
from tests.utils import fast_notify_section, gateway_client, operator_client, report, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = ("ingest-gateway", "ingest-validator", "scoring", "notify")
OP_TOKEN = "console-verify-operator-token-kaltara"
OP_NAME = "Piket Kesbangpol Kaltara"
CAT = "sara_incitement"
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "console"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    tmp = tmp_path_factory.mktemp("console-verify")
    extra = f"""
operators:
  - id: op-kesbangpol
    name: {OP_NAME}
    token: "{OP_TOKEN}"
scoring:
  method: ears-c2
  web_port: {free_port()}
  tick_interval_s: 1
{fast_notify_section(free_port(), "console-verify-link-secret-0123456789", operators=False)}"""
    with EmbeddedStack(write_config(tmp / "pantau.yaml", extra), tmp, SERVICES) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with operator_client(stack, OP_TOKEN) as c:
        yield c


def opened(stack: EmbeddedStack, api: httpx.Client, region: str, category: str) -> tuple[dict, dict]:
    """Post an unverified severity-4 report; the siaga incident it opens."""
    r = report(region_code=region, category=category, severity=4, occurred_at=now_local(),
               title="Ujaran kebencian di grup warga")
    with gateway_client(stack) as gw:
        post(gw, [r])

    def probe() -> list[dict]:
        found = api.get("/v1/incidents", params={"region": region[:5], "status": "open"}).json()["incidents"]
        return [i for i in found if i["category"] == category]

    [inc] = wait_for(f"an incident for {region} {category}", probe)
    assert inc["level"] == "siaga" and r["event_id"] in inc["report_ids"]
    return r, inc


def timeline_says(api: httpx.Client, incident_id: str, text: str) -> Callable[[], dict | None]:
    def probe() -> dict | None:
        doc = api.get(f"/v1/incidents/{incident_id}").json()
        return doc if any(text in str(e.get("message", "")) for e in doc["timeline"]) else None
    return probe


def updates_of(stack: EmbeddedStack, done: Callable[[list[dict]], bool]) -> list[dict]:
    """`scores` on a thread of its own: Playwright's sync API keeps an event loop running on
    the test's thread, where asyncio.run refuses to start another."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(scores, stack, done, CAT).result()


def decided(updates: list[dict], word: str) -> list[dict]:
    return [u for u in updates if any(word in why for why in u["reasons"])]


def test_verify_then_reject_from_the_console_in_chromium(stack: EmbeddedStack, api: httpx.Client,
                                                         browser_page: Any):  # noqa: F811
    r, inc = opened(stack, api, "65.01.05", CAT)
    [first] = of(updates_of(stack, lambda us: len(us) >= 1), "65.01")
    assert (first["level"], first["observed"], first["weighted"]) == ("siaga", 1, 0.5)

    page = browser_page
    page.set_viewport_size({"width": 360, "height": 780})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{stack.config.notify.port}"
    assert page.goto(f"{base}/console").status == 200
    page.fill("input[name=token]", OP_TOKEN)
    with page.expect_navigation():
        page.get_by_role("button", name="Masuk").click()

    row = page.locator(f'article[data-incident="{inc["id"]}"] li[data-report="fkdm-kaltara/{r["event_id"]}"]')
    assert row.count() == 1 and "belum diverifikasi" in row.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # no sideways scrolling
    page.screenshot(path=str(ARTIFACTS / "reports-360.png"), full_page=True)

    row.locator("input[name=note]").fill("dicek lewat telepon ke kepala desa")
    with page.expect_navigation():
        row.get_by_role("button", name="Verifikasi").click()
    assert "Laporan diverifikasi" in page.inner_text("body")

    # The live scorer applied it: full weight, and the update names the operator.
    line = f"laporan {r['event_id']} diverifikasi oleh {OP_NAME}"
    updates = updates_of(stack, lambda us: len(decided(us, "diverifikasi oleh")) >= 1)
    [v] = decided(of(updates, "65.01"), "diverifikasi oleh")
    assert (v["observed"], v["weighted"], v["level"], v["reasons"][-1]) == (1, 1.0, "siaga", line)
    wait_for("the verification in the incident's timeline", timeline_says(api, inc["id"], line))

    page.reload()
    card = page.locator(f'article[data-incident="{inc["id"]}"]')
    assert "diverifikasi" in card.locator(f'li[data-report="fkdm-kaltara/{r["event_id"]}"] .decision').inner_text()
    card.locator("details summary").click()
    assert line in card.inner_text()
    page.screenshot(path=str(ARTIFACTS / "reports-verified-360.png"), full_page=True)

    # Tolak: the report leaves the cell and the siaga it alone called for falls at once.
    with page.expect_navigation():
        card.locator(f'li[data-report="fkdm-kaltara/{r["event_id"]}"]').get_by_role("button", name="Tolak").click()
    assert "Laporan ditolak" in page.inner_text("body")
    updates = updates_of(stack, lambda us: len(decided(us, "ditolak oleh")) >= 1)
    [x] = decided(of(updates, "65.01"), "ditolak oleh")
    assert (x["observed"], x["weighted"], x["level"], x["report_ids"]) == (0, 0.0, "normal", [])
    assert x["reasons"][0] == "turun dari siaga: laporan yang menaikkannya ditolak"
    rejected = f"laporan {r['event_id']} ditolak oleh {OP_NAME}"
    doc = wait_for("the incident resolved", lambda: (d := api.get(f"/v1/incidents/{inc['id']}").json())
                   ["status"] == "resolved" and d)
    assert doc["resolution"] == "auto" and any(e.get("message") == rejected for e in doc["timeline"])
    page.reload()
    assert page.locator(f'article[data-incident="{inc["id"]}"]').count() == 0  # resolved: off the console
    # A genuine report the same day opens a new incident: the false one closed at normal.
    again, fresh = opened(stack, api, "65.01.05", CAT)
    assert fresh["id"] != inc["id"]


def test_a_decision_needs_the_session_and_its_csrf_token(stack: EmbeddedStack, api: httpx.Client):
    r, inc = opened(stack, api, "65.02", CAT)
    base = f"http://127.0.0.1:{stack.config.notify.port}"
    url = f"/console/reports/fkdm-kaltara/{r['event_id']}"
    with httpx.Client(base_url=base, timeout=10) as c:
        assert c.post(url, data={"decision": "verify"}).status_code == 403          # no session
        assert c.post("/console/login", data={"token": OP_TOKEN}).status_code == 303
        page = c.get("/console").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        for data in ({"decision": "verify"}, {"decision": "verify", "csrf": "forged"}):
            refused = c.post(url, data=data)
            assert refused.status_code == 403 and "Traceback" not in refused.text
        page = c.get("/console").text
        assert re.search(rf'data-report="fkdm-kaltara/{re.escape(r["event_id"])}">.*?'
                         r'<span class="decision">belum diverifikasi</span>', page)
        # The same form with the token goes through.
        ok = c.post(url, data={"decision": "verify", "csrf": csrf})
        assert ok.status_code == 303 and ok.headers["location"].endswith("done=verify")
    line = f"laporan {r['event_id']} diverifikasi oleh {OP_NAME}"
    wait_for("the verification in the incident's timeline", timeline_says(api, inc["id"], line))
