"""The operators' picture on the embedded stack (issue 17's "done means"): a severity-5 report in
Kabupaten Bulungan (65.01) posted over HTTP goes through validation and scoring to an `awas`
incident, and then

  * `GET /console/map.svg?region=65` draws all five kabupaten/kota of Kalimantan Utara with
    65.01 at `awas`;
  * `pantau report --date <today> --region 65` (HTML and Markdown) names Kabupaten Bulungan
    at AWAS, with the incident, its reason and the map;
  * the console in a real headless Chromium, at phone width: log in, the incident on the map
    (counted in the screenshot's pixels, so a map that draws nothing fails), acknowledge, log
    out. Screenshots go to var/test-artifacts/console/ (gitignored).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson
import pytest

from cli.stack import EmbeddedStack, free_port
from shared.regions import WITA
from services.notify.region_map import COLOURS
from tests.conftest import write_config
from tests.notify.png import count_colour
from tests.notify.test_pipeline import browser_page  # noqa: F401  (fixture)
from tests.utils import auth, fast_notify_section, report, operator_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

SERVICES = ("ingest-gateway", "ingest-validator", "scoring", "notify")
OP_TOKEN = "console-operator-token-kaltara"
KALTARA = ["65.01", "65.02", "65.03", "65.04", "65.71"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "test-artifacts" / "console"
AWAS_RGB = tuple(int(COLOURS["awas"][i:i + 2], 16) for i in (1, 3, 5))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    tmp = tmp_path_factory.mktemp("console")
    extra = f"""
operators:
  - id: op-kesbangpol
    name: Piket Kesbangpol Kaltara
    token: "{OP_TOKEN}"
scoring:
  web_port: {free_port()}
  tick_interval_s: 1
{fast_notify_section(free_port(), "console-link-secret-0123456789abcdef", operators=False)}"""
    with EmbeddedStack(write_config(tmp / "pantau.yaml", extra), tmp, SERVICES) as s:
        yield s


@pytest.fixture(scope="module")
def api(stack: EmbeddedStack) -> Iterator[httpx.Client]:
    with operator_client(stack, OP_TOKEN) as c:
        yield c


@pytest.fixture(scope="module")
def incident(stack: EmbeddedStack, api: httpx.Client) -> dict[str, Any]:
    """The `awas` incident a severity-5 report in Bulungan opens."""
    body = report(region_code="65.01", category="communal_clash", severity=5,
                  title="Bentrok dua kelompok pendukung di Tanjung Selor")
    r = httpx.post(f"http://127.0.0.1:{stack.config.ingest.port}/v1/reports", content=orjson.dumps(body),
                   headers=auth(), timeout=30)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = api.get("/v1/incidents", params={"region": "65.01", "status": "open"}).json()["incidents"]
        if found:
            assert found[0]["level"] == "awas"
            return found[0]
        time.sleep(0.2)
    raise AssertionError("no incident opened for 65.01 within 60 s")


def map_levels(svg: str) -> dict[str, str]:
    return dict(re.findall(r'<path data-region="([0-9.]+)" data-level="(\w+)"', svg))


def test_map_shows_bulungan_at_awas_among_all_five(api: httpx.Client, incident: dict[str, Any]):
    r = api.get("/console/map.svg", params={"region": "65"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert map_levels(r.text) == {"65.01": "awas", "65.02": "normal", "65.03": "normal", "65.04": "normal",
                                  "65.71": "normal"}
    assert httpx.get(f"{api.base_url}/console/map.svg", params={"region": "65"}).status_code == 401
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "map-65.svg").write_text(r.text)


def pantau(stack: EmbeddedStack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PANTAU_OPERATOR_TOKEN": OP_TOKEN}
    env.pop("PANTAU_NOTIFY_URL", None)
    return subprocess.run([sys.executable, "-m", "cli.main", "report", *args,
                           "--url", f"http://127.0.0.1:{stack.config.notify.port}"],
                          capture_output=True, text=True, env=env, timeout=60)


def test_situation_report_names_bulungan(stack: EmbeddedStack, incident: dict[str, Any], tmp_path: Path):
    today = datetime.now(WITA).date().isoformat()  # Kalimantan Utara keeps WITA
    out = tmp_path / "laporan.html"
    done = pantau(stack, "--date", today, "--region", "65", "--format", "html", "--out", str(out))
    assert done.returncode == 0, done.stderr
    doc = out.read_text()
    assert f"Laporan situasi: Kalimantan Utara, {today}" in doc
    # The level table: Bulungan at AWAS in its category, the other four normal.
    row = re.search(r"<tr><td[^>]*>Kabupaten Bulungan</td>(.*?)</tr>", doc)
    assert row and "AWAS" in row.group(1), doc
    for name in ("Kabupaten Malinau", "Kabupaten Nunukan", "Kabupaten Tana Tidung", "Kota Tarakan"):
        assert re.search(rf"<tr><td[^>]*>{name}</td><td[^>]*>NORMAL</td>", doc), name
    assert "Bentrok antarkelompok" in doc and "Insiden dibuka (1)" in doc and "belum dikonfirmasi" in doc
    assert any(reason in doc for reason in incident["reasons"])
    assert map_levels(doc)["65.01"] == "awas"  # the map, inline

    md = tmp_path / "laporan.md"
    done = pantau(stack, "--date", today, "--region", "65", "--format", "md", "--out", str(md), "--lang", "en")
    assert done.returncode == 0, done.stderr
    text = md.read_text()
    assert "| Kabupaten Bulungan | AWAS |" in text and "Situation report" in text
    assert "](laporan.map.svg)" in text and map_levels((tmp_path / "laporan.map.svg").read_text())["65.01"] == "awas"

    # A day with nothing open: Bulungan stays at NORMAL; and bad options name themselves.
    quiet = pantau(stack, "--date", "2020-01-01", "--region", "65", "--format", "md")
    assert quiet.returncode == 0 and "| Kabupaten Bulungan | NORMAL |" in quiet.stdout
    bad = pantau(stack, "--date", "27-11-2024")
    assert bad.returncode == 2 and "--date" in bad.stderr and "Traceback" not in bad.stderr


def test_console_in_chromium(stack: EmbeddedStack, api: httpx.Client, incident: dict[str, Any],
                             browser_page: Any):  # noqa: F811
    page = browser_page
    page.set_viewport_size({"width": 360, "height": 780})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{stack.config.notify.port}"

    resp = page.goto(f"{base}/console")
    assert resp is not None and resp.status == 200
    page.fill("input[name=token]", OP_TOKEN)
    with page.expect_navigation():
        page.get_by_role("button", name="Masuk").click()
    assert "Piket Kesbangpol Kaltara" in page.inner_text("header")

    with page.expect_navigation():
        page.select_option("select[name=region]", "65")
        page.get_by_role("button", name="Tampilkan").click()
    # The map: five regions, Bulungan at awas; the incident with its reason below it.
    assert page.locator("svg path[data-region]").count() == 5
    assert page.get_attribute('path[data-region="65.01"]', "data-level") == "awas"
    card = page.locator(f'article[data-incident="{incident["id"]}"]')
    assert card.count() == 1 and "Kabupaten Bulungan" in card.inner_text() and "AWAS" in card.inner_text()
    assert incident["reasons"][0] in card.inner_text()
    # Nothing wider than the phone: no sideways scrolling at 360 px.
    assert page.evaluate("document.documentElement.scrollWidth") <= 360

    shot = page.screenshot(path=str(ARTIFACTS / "console-360.png"), full_page=True)
    map_shot = page.locator(".map svg").screenshot(path=str(ARTIFACTS / "map-65.png"))
    # The screenshot itself shows Bulungan painted in the awas colour: a map that draws no
    # regions (or draws them off-screen) has no such pixels.
    assert count_colour(map_shot, AWAS_RGB) > 500
    assert count_colour(shot, AWAS_RGB) > 500

    # Acknowledge from the console: the API says who, and the page says it is done.
    with page.expect_navigation():
        card.get_by_role("button", name="Konfirmasi").click()
    assert "Insiden dikonfirmasi." in page.inner_text("body")
    acked = api.get(f"/v1/incidents/{incident['id']}").json()
    assert acked["status"] == "acknowledged" and acked["acknowledged_by"] == "operator:op-kesbangpol"
    assert page.locator(f'article[data-incident="{incident["id"]}"] .status').inner_text() == "dikonfirmasi"
    # Still open (acknowledged, not resolved): the map still shows it.
    assert page.get_attribute('path[data-region="65.01"]', "data-level") == "awas"

    # English by choice, then log out: the console asks for the token again.
    with page.expect_navigation():
        page.get_by_role("link", name="English").click()
    assert "Open incidents" in page.inner_text("body")
    page.set_viewport_size({"width": 1000, "height": 900})
    page.screenshot(path=str(ARTIFACTS / "console-en-1000.png"), full_page=True)
    with page.expect_navigation():
        page.get_by_role("button", name="Log out").click()
    assert page.locator("input[name=token]").count() == 1
    assert page.goto(f"{base}/console/map.svg?region=65").status == 401
