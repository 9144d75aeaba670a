"""The dashboards and alert rules against real data: the embedded stack (ingest gateway and
validator, and scoring and notify when they start) scraped every second by a real Prometheus
(Debian's `prometheus`), fed a small scenario of good and bad reports over HTTP and Kafka.

Every panel query (as Grafana would send it) and every rule expression must evaluate without
error, Prometheus must have evaluated every rule with health "ok", and the core ingest panels
must return data. Nothing sleeps: each wait polls Prometheus' API against a deadline.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import httpx
import orjson
import pytest
import yaml

from cli.stack import Child, EmbeddedStack, free_port, wait_port
from shared import topics
from tests.conftest import write_config
from tests.deploy import RULES_FILE, alert_rules, generator, panel_targets, require_tool, substitute, variable_queries
from tests.utils import auth, JABAR_KEY, produce, report, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REQUIRED = ("ingest-gateway", "ingest-validator")
OPTIONAL = ("scoring", "notify")
MODULES = {"scoring": "services.scoring.__main__", "notify": "services.notify.__main__"}


def _ports(stack: EmbeddedStack) -> dict[str, int]:
    c = stack.config
    return {"ingest-gateway": c.ingest.port, "ingest-validator": c.ingest.metrics_port,
            "scoring": c.scoring.web_port, "notify": c.notify.metrics_port}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    prometheus = require_tool("prometheus")
    tmp = tmp_path_factory.mktemp("live")
    cfg = write_config(tmp / "pantau.yaml", f"scoring:\n  web_port: {free_port()}\n  tick_interval_s: 1\n")
    stack = EmbeddedStack(cfg, tmp, REQUIRED)
    prom: Child | None = None
    try:
        stack.start()
        started = list(REQUIRED)
        for name in OPTIONAL:
            if importlib.util.find_spec(MODULES[name]) is None:
                continue
            try:
                stack.start_service(name)
                started.append(name)
            except (RuntimeError, TimeoutError) as e:
                stack.children[name].stop()
                warnings.warn(f"{name} did not start ({e}); its panels are checked without its data")
        ports = _ports(stack)
        prom_port = free_port()
        prom_cfg = tmp / "prometheus.yml"
        prom_cfg.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [{"job_name": n, "static_configs": [{"targets": [f"127.0.0.1:{ports[n]}"]}]}
                               for n in started],
        }))
        prom = Child("prometheus", [
            prometheus, f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
        ], stack.logdir / "prometheus.log").start()
        wait_port("127.0.0.1", prom_port, 30, prom.proc, "prometheus")
        with httpx.Client(base_url=f"http://127.0.0.1:{prom_port}", timeout=10) as api:
            wait_for("Prometheus ready", lambda: api.get("/-/ready").status_code == 200)
            yield {"stack": stack, "api": api, "started": started}
    finally:
        if prom is not None:
            prom.stop()
        stack.stop()


def query(api: httpx.Client, expr: str) -> dict[str, Any]:
    r = api.get("/api/v1/query", params={"query": expr})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr!r}: {body.get('error', body)}"
    return body["data"]


def query_range(api: httpx.Client, expr: str, seconds: int = 60) -> dict[str, Any]:
    end = time.time()
    r = api.get("/api/v1/query_range", params={"query": expr, "start": end - seconds, "end": end, "step": "2s"})
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr!r}: {body.get('error', body)}"
    return body["data"]


def scalar_sum(api: httpx.Client, expr: str) -> float:
    return sum(float(s["value"][1]) for s in query(api, expr)["result"])


def drive_scenario(stack: EmbeddedStack) -> dict[str, int]:
    """Good and bad reports over HTTP and the raw topic; returns the counts to expect."""
    base = f"http://127.0.0.1:{stack.config.ingest.port}"
    with httpx.Client(base_url=base, timeout=30) as c:
        good = [report() for _ in range(3)]
        for r in good:
            assert c.post("/v1/reports", json=r, headers=auth()).status_code == 202
        assert c.post("/v1/reports", json=good[0], headers=auth()).status_code == 200       # duplicate
        assert c.post("/v1/reports", json=report(severity=9), headers=auth()).status_code == 422
        assert c.post("/v1/reports", json=report(), headers=auth("no-such-key")).status_code == 401
        assert c.post("/v1/reports", json=report(region_code="32.73"), headers=auth()).status_code == 403
        assert c.post("/v1/reports", content=b"x", headers={**auth(), "Content-Type": "text/plain"}).status_code == 415
        batch = {"reports": [report(source="bawaslu-jabar", region_code="32.73"), report(source="bawaslu-jabar")]}
        r = c.post("/v1/reports:batch", json=batch, headers=auth(JABAR_KEY))
        assert [x["status"] for x in r.json()["results"]] == ["accepted", "rejected"]
    raw_good = orjson.dumps(report(title="Laporan lewat Kafka"))
    bad_json, bad_report = b"{not json", orjson.dumps({**report(), "severity": 0})
    asyncio.run(produce(stack.config.kafka.bootstrap_servers, topics.REPORTS_RAW, [raw_good, bad_json, bad_report]))
    return {"accepted": 5, "dlq": 2}


def test_every_panel_and_rule_evaluates_and_core_ingest_panels_have_data(live):
    api: httpx.Client = live["api"]
    stack: EmbeddedStack = live["stack"]
    started: list[str] = live["started"]

    def all_up() -> bool:
        ups = {s["metric"]["job"]: s["value"][1] for s in query(api, "up")["result"]}
        return all(ups.get(n) == "1" for n in started)

    wait_for(f"up == 1 for {started}", all_up)
    expect = drive_scenario(stack)
    wait_for("accepted reports scraped",
             lambda: scalar_sum(api, "sum(pantau_reports_accepted_total)") >= expect["accepted"])
    wait_for("dead-lettered raw messages scraped",
             lambda: scalar_sum(api, 'sum(pantau_dlq_messages_total{job="ingest-validator"})') >= expect["dlq"])

    # Every panel query, as Grafana sends it, and every variable's selector.
    gen = generator()
    core = set(gen.CORE_INGEST_PANELS)
    checked = 0
    for name, dash in gen.build().items():
        for title, t in panel_targets(dash):
            expr = substitute(t["expr"])
            if t.get("instant"):
                query(api, expr)
            else:
                query_range(api, expr)
            checked += 1
            if title in core:
                # A rate needs two scrapes of the new counts: poll, do not sleep.
                wait_for(f"data for {name} / {title}: {expr}", lambda: query(api, expr)["result"], timeout_s=30)
        for var, selector in variable_queries(dash):
            query(api, selector)
    assert checked > 40

    # Every rule expression evaluates, and Prometheus itself has evaluated every rule cleanly.
    for rule in alert_rules():
        query(api, rule["expr"])

    def rules_evaluated() -> list[dict[str, Any]] | None:
        got = [r for g in api.get("/api/v1/rules").json()["data"]["groups"] for r in g["rules"]]
        ready = len(got) == len(alert_rules()) and all(r["health"] != "unknown" for r in got)
        return got if ready else None

    evaluated = wait_for("every rule evaluated once", rules_evaluated, timeout_s=30)
    bad = {r["name"]: r.get("lastError") for r in evaluated if r["health"] != "ok"}
    assert not bad, f"rules with errors: {bad}"

    # The scenario is visible where an operator looks first.
    received = {s["metric"]["source"] for s in query(api, "sum by (source) (pantau_reports_received_total)")["result"]}
    assert {"fkdm-kaltara", "bawaslu-jabar"} <= received
    reasons = {s["metric"]["reason"] for s in query(api, "sum by (reason) (pantau_reports_rejected_total)")["result"]}
    assert {"invalid", "unauthorized", "forbidden", "unsupported_media_type"} <= reasons
    dlq = {s["metric"]["reason"] for s in query(api, "sum by (reason) (pantau_dlq_messages_total)")["result"]}
    assert {"invalid_json"} <= dlq and len(dlq) >= 2, dlq

    # Every consumer says how far behind it is, so "is scoring keeping up" has an answer.
    consumers = {"ingest-validator"} | ({"scoring", "notify"} & set(started))

    def lag_jobs() -> set[str]:
        got = {s["metric"]["job"] for s in query(api, "pantau_consumer_lag_messages")["result"]}
        return got if consumers <= got else set()

    wait_for(f"pantau_consumer_lag_messages from {sorted(consumers)}", lag_jobs, timeout_s=30)
    assert not stack.crashed(), f"crashed during the test: {stack.crashed()}"


def test_rules_file_is_the_one_prometheus_loaded(live):
    files = {g["file"] for g in live["api"].get("/api/v1/rules").json()["data"]["groups"]}
    assert files == {str(Path(RULES_FILE))}
