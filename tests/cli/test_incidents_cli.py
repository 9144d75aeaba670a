"""`pantau incidents` and `pantau ack` as an operator runs them, against a real notify API
(the service's FastAPI app served by uvicorn on loopback, over a private Valkey): the table and
its filters, `--json`, ack with a note, the API found through the config file, and every
failure (401, 404, 409, connection refused, no token) as one line and its exit code."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis
import redis.asyncio as aioredis
import uvicorn

from cli.incidents import EXIT, age, base_url
from cli.stack import free_port, wait_port
from shared.config import Operator
from shared.notify_config import Policy
from services.notify.api import ApiContext, create_app
from services.notify.store import IncidentStore
from services.notify.transitions import acknowledge, inhibited, open_incident, resolve
from services.notify.incident import incident_key
from shared.scores import ScoreUpdate
from services.notify.links import LinkMaker
from tests.utils import local_redis

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "op-token-cli-kaltara-7f3a"
POLICY = Policy.model_validate({"id": "all", "steps": [{"notify": ["contact:budi"], "wait_minutes": 10}]})


class NotifyApi:
    """The notify API's app, served over HTTP on a free loopback port from a thread."""

    def __init__(self, redis_url: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.redis_url = redis_url
        self.server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            r = aioredis.from_url(self.redis_url)
            links = LinkMaker(b"k" * 32, self.url, 3600)
            app = create_app(ApiContext(store=IncidentStore(r), links=links,
                                        operators=[Operator(id="op1", name="Piket Kesbangpol", token=TOKEN)]))
            # uvicorn leaves signals alone outside the main thread; the test stops it by should_exit.
            self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                 access_log=False, lifespan="off"))
            try:
                await self.server.serve()
            finally:
                await r.aclose()

        asyncio.run(main())

    def __enter__(self) -> "NotifyApi":
        self.thread.start()
        wait_port("127.0.0.1", self.port, 15, None, "notify api")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_redis(tmp_path_factory.mktemp("cli-redis")) as url:
        yield url


@pytest.fixture(scope="module")
def api(redis_url: str) -> Iterator[NotifyApi]:
    with NotifyApi(redis_url) as a:
        yield a


SEEDED = {"open": "inc-65.71-election_dispute", "held": "inc-65.03-election_dispute",
          "province": "inc-65-election_dispute", "acked": "inc-65.01-mass_mobilization",
          "resolved": "inc-32.73-communal_clash"}


@pytest.fixture
def seeded(redis_url: str) -> dict[str, str]:
    """Five incidents opened an hour ago: open, held by the province, the province itself,
    acknowledged, resolved."""
    with redis.Redis.from_url(redis_url) as r:
        r.flushdb()

    async def seed() -> None:
        r = aioredis.from_url(redis_url)
        store = IncidentStore(r)
        now = time.time() - 3600
        opened = {}
        for key, iid in SEEDED.items():
            region, category = iid[4:].split("-", 1)
            u = ScoreUpdate.model_validate({"region_code": region, "category": category, "level": "siaga",
                                            "bucket_start": "2024-11-27T00:00:00+08:00", "reasons": ["r"]})
            inc, _ = await store.upsert(incident_key(region, category),
                                        lambda _c: open_incident(iid, u, [POLICY], now), lambda i: None)
            opened[key] = inc
        await store.mutate(SEEDED["held"], lambda i: inhibited(i, opened["province"], now + 1, now + 60))
        await store.mutate(SEEDED["acked"], lambda i: acknowledge(i, "operator:op2", now + 5))
        await store.mutate(SEEDED["resolved"], lambda i: resolve(i, "operator:op2", now + 5))
        await r.aclose()

    asyncio.run(seed())
    return SEEDED


def pantau(*args: str, token: str | None = TOKEN, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("PANTAU_OPERATOR_TOKEN", "PANTAU_NOTIFY_URL",
                                                           "PANTAU_CONFIG")}
    if token is not None:
        e["PANTAU_OPERATOR_TOKEN"] = token
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env=e)


def clean(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr + r.stdout
    assert TOKEN not in r.stderr + r.stdout


# --- listing -------------------------------------------------------------------------------------
def test_incidents_lists_the_open_ones_as_a_table(api: NotifyApi, seeded: dict[str, str]) -> None:
    r = pantau("incidents", "--url", api.url)
    clean(r)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for key in ("open", "held", "province"):
        assert seeded[key] in out
    assert seeded["acked"] not in out and seeded["resolved"] not in out
    assert "Kota Tarakan" in out and "election_dispute" in out and "siaga" in out
    assert "held by" in out  # the held kabupaten says which province incident holds it
    assert "1h00m" in out or "1h01m" in out
    assert "3 open incident(s)" in out


def test_incidents_status_filter_and_json(api: NotifyApi, seeded: dict[str, str]) -> None:
    r = pantau("incidents", "--url", api.url, "--status", "acknowledged")
    clean(r)
    assert r.returncode == 0 and seeded["acked"] in r.stdout and seeded["open"] not in r.stdout
    assert "operator:op2" in r.stdout
    r = pantau("incidents", "--url", api.url, "--status", "all", "--json")
    clean(r)
    body = json.loads(r.stdout)
    assert {i["id"] for i in body["incidents"]} == set(seeded.values())
    held = next(i for i in body["incidents"] if i["id"] == seeded["held"])
    assert held["inhibited_by"] == seeded["province"]
    r = pantau("incidents", "--url", api.url, "--status", "resolved", "--region", "65")
    assert r.returncode == 0 and "no resolved incidents" in r.stdout
    r = pantau("incidents", "--url", api.url, "--status", "closed")
    clean(r)
    assert r.returncode == EXIT["usage"] and "--status must be" in r.stderr


def test_incidents_finds_the_api_through_the_config_file(api: NotifyApi, seeded: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "pantau.yaml"
    cfg.write_text(f"notify:\n  host: 0.0.0.0\n  port: {api.port}\n")
    r = pantau("incidents", "--config", str(cfg))
    clean(r)
    assert r.returncode == 0 and seeded["open"] in r.stdout
    r = pantau("incidents", env={"PANTAU_CONFIG": str(cfg)})
    assert r.returncode == 0 and seeded["open"] in r.stdout
    cfg.write_text("notify:\n  port: 99999\n")
    r = pantau("incidents", "--config", str(cfg))
    clean(r)
    assert r.returncode == EXIT["usage"] and "notify.port" in r.stderr


# --- ack -----------------------------------------------------------------------------------------
def test_ack_with_a_note_is_recorded(api: NotifyApi, seeded: dict[str, str], redis_url: str) -> None:
    r = pantau("ack", seeded["open"], "--note", "ditangani Kesbangpol Tarakan", "--url", api.url)
    clean(r)
    assert r.returncode == 0, r.stderr
    assert f"{seeded['open']}: acknowledged by operator:op1" in r.stdout

    async def check() -> None:
        ar = aioredis.from_url(redis_url)
        store = IncidentStore(ar)
        inc = await store.get(seeded["open"])
        assert inc.status == "acknowledged" and inc.acknowledged_by == "operator:op1"
        last = (await store.timeline(seeded["open"]))[-1]
        assert (last["kind"], last["via"], last["note"]) == ("acknowledged", "api", "ditangani Kesbangpol Tarakan")
        await ar.aclose()

    asyncio.run(check())
    r = pantau("ack", seeded["open"], "--url", api.url, "--json")  # again: no change, still 0
    assert r.returncode == 0 and json.loads(r.stdout)["acknowledged_by"] == "operator:op1"


def test_ack_errors_are_one_line_and_an_exit_code(api: NotifyApi, seeded: dict[str, str]) -> None:
    cases = [
        (pantau("ack", "no-such-incident", "--url", api.url), EXIT["not_found"], "not found"),
        (pantau("ack", seeded["resolved"], "--url", api.url), EXIT["conflict"], "already resolved"),
        (pantau("ack", seeded["open"], "--url", api.url, token="wrong-token"), EXIT["unauthorized"],
         "refused the operator token"),
        (pantau("incidents", "--url", api.url, token="wrong-token"), EXIT["unauthorized"], "PANTAU_OPERATOR_TOKEN"),
        (pantau("ack", seeded["open"], "--url", api.url, token=None), EXIT["usage"], "no operator token"),
        (pantau("ack", seeded["open"], "--url", f"http://127.0.0.1:{free_port()}"), EXIT["unreachable"],
         "cannot reach the notify API"),
        (pantau("incidents", "--url", f"http://127.0.0.1:{free_port()}"), EXIT["unreachable"], "is notify running"),
    ]
    for r, code, words in cases:
        clean(r)
        assert r.returncode == code, (r.args, r.returncode, r.stderr)
        assert words in r.stderr, r.stderr
        assert r.stdout == ""
    assert "wrong-token" not in "".join(r.stderr for r, _, _ in cases)


def test_token_flag_works_too(api: NotifyApi, seeded: dict[str, str]) -> None:
    r = pantau("incidents", "--url", api.url, "--token", TOKEN, token=None)
    clean(r)
    assert r.returncode == 0 and seeded["open"] in r.stdout


# --- pure helpers --------------------------------------------------------------------------------
def test_age_and_base_url() -> None:
    assert age("2024-11-27T06:00:00Z", now=1732687200 + 40) == "40s"
    assert age("2024-11-27T06:00:00Z", now=1732687200 + 7 * 60) == "7m"
    assert age("2024-11-27T06:00:00Z", now=1732687200 + 2 * 3600 + 5 * 60) == "2h05m"
    assert age("2024-11-27T06:00:00Z", now=1732687200 + 3 * 86400 + 4 * 3600) == "3d4h"
    assert age(None) == "?" and age("yesterday") == "?"
    assert base_url("0.0.0.0", 8082) == "http://127.0.0.1:8082"
    assert base_url("10.0.0.5", 9000) == "http://10.0.0.5:9000"
    assert base_url("::1", 8082) == "http://[::1]:8082"
