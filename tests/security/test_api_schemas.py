"""Schemathesis against both OpenAPI documents as the running services serve them: the ingest
gateway's and the notify API's `/openapi.json`, every operation, positive and negative data,
with valid credentials (a source API key configured hashed and one configured in plain text;
an operator token) and with none.

Schemathesis's own checks run on every answer (no 5xx; status codes, content types, headers
and bodies as documented; schema-violating data refused, schema-valid data accepted; auth
enforced, probed once per operation without and with a wrong credential), plus the contract's: every 4xx is JSON that names the reason, and a 422 names each
bad field. Every report the gateway was sent is recorded, and the last test here checks that
nothing was half-accepted: a refused report is neither on `pantau.reports.v1` (nor the raw
topic) nor holds a duplicate claim in Redis, and each accepted one is on the topic once.

Cases per (operation, generation mode): `PANTAU_FUZZ_EXAMPLES`, default 30: about 880 cases
in `make test` (about a minute on 2 cores; an operation without parameters has one possible
case). The full run is `PANTAU_FUZZ_EXAMPLES=200 pytest tests/security/test_api_schemas.py -s`,
which prints the count per schema: 5,772 cases, 6 minutes.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import orjson
import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
import jsonschema_rs
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection

from cli.stack import EmbeddedStack
from services.ingest.state import dedup_key
from shared import topics
from tests.security.conftest import HASHED_KEY, OP_TOKEN, OP_TOKEN_HASHED, PLAIN_KEY, ingest_url, notify_url
from tests.utils import collect, value

EXAMPLES = int(os.environ.get("PANTAU_FUZZ_EXAMPLES", "30"))
# No shrinking: a failing case is reported as found (with its curl line), not minimised over
# hundreds of further HTTP round trips.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))
NO_AUTH = settings(FUZZ, max_examples=max(5, EXAMPLES // 5))

KEYS = {"fkdm-kaltara": HASHED_KEY, "bawaslu-jabar": PLAIN_KEY}
# Real region codes inside each source's scope, for positive reports that should be accepted.
IN_SCOPE = {"fkdm-kaltara": ["65", "65.71", "65.71.02", "65.01", "65.03", "65.71.02.1001"],
            "bawaslu-jabar": ["32.73", "32.04", "32.73.01"]}
WITA = timezone(timedelta(hours=8))


class Sent:
    """What the gateway answered for each (source, event_id) it was sent."""

    def __init__(self) -> None:
        self.outcomes: dict[tuple[str, str], set[str]] = {}

    def add(self, source: Any, event_id: Any, outcome: str) -> None:
        if isinstance(event_id, str) and isinstance(source, str):
            self.outcomes.setdefault((source, event_id), set()).add(outcome)


SENT = Sent()


def live_schema(url: str):
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


def fuzz(schema, examples: settings, run_case: Callable[[Any], None]) -> tuple[list[str], Counter]:
    """Every operation, in positive and negative mode: `run_case` for each generated case.
    Returns one line per (operation, mode) that failed, and how many cases each ran."""
    failures: list[str] = []
    ran: Counter = Counter()
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @examples
            @given(case=op.as_strategy(generation_mode=mode))
            def one(case):
                ran[op.label] += 1
                run_case(case)

            try:
                one()
            except Unsatisfiable:
                pass  # nothing to negate (no parameters, or a free-form string): no negative case exists
            except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - reported with its operation
                failures.append(f"--- {op.label} ({mode.value}):\n{str(e)[:6000]}")
    return failures, ran


def positive_report(case) -> str:
    """Give a positive report a source, region and time the gateway will take, so the accepted
    path is exercised too (the document cannot list 83,762 region codes); one in four gets a
    region outside its key's scope instead (403). Returns the source whose key to send."""
    rnd = random.Random(repr(case.body))
    source = rnd.choice(sorted(KEYS))
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE or not isinstance(case.body, dict):
        return source

    def fix(r: Any) -> None:
        if isinstance(r, dict):
            for k in ("severity", "casualties", "participants", "schema_version"):
                if isinstance(r.get(k), float):  # 2.0 is a JSON Schema integer; the validator wants 2
                    r[k] = int(r[k])
            r["source"] = source
            scope = IN_SCOPE[source] if rnd.random() < 0.75 else next(v for k, v in IN_SCOPE.items() if k != source)
            r["region_code"] = rnd.choice(scope)
            r["occurred_at"] = (datetime.now(WITA) - timedelta(minutes=rnd.randint(0, 600))).isoformat()

    if case.path == "/v1/reports":
        fix(case.body)
    elif isinstance(case.body.get("reports"), list):
        for r in case.body["reports"]:
            fix(r)
    return source


# --- the contract's own checks, on top of schemathesis's ---------------------------------------
def check_error_body(response, case) -> None:
    """Every 4xx/5xx is JSON naming the reason; a 422 names each bad field."""
    status = response.status_code
    assert status < 500, f"{status} for {case.method} {case.path}: {response.text[:500]}"
    if status < 400:
        return
    ctype = response.headers.get("content-type", [""])
    ctype = ctype[0] if isinstance(ctype, list) else ctype
    assert ctype.startswith("application/problem+json"), (status, ctype, response.text[:300])
    body = orjson.loads(response.content)
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert body["status"] == status and body["type"].startswith("urn:pantau:problem:"), body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if status == 422:
        assert body["errors"], body
        for e in body["errors"]:
            assert isinstance(e.get("field"), str) and e["field"], e
            assert isinstance(e.get("message"), str) and e["message"], e
        return
    assert body["errors"] == [], body


def record_reports(case, response, source: str) -> None:
    if case.method != "POST" or not case.path.startswith("/v1/reports") or not isinstance(case.body, dict):
        return
    items = [case.body] if case.path == "/v1/reports" else case.body.get("reports")
    if not isinstance(items, list):
        return
    items = [r if isinstance(r, dict) else {} for r in items]
    status = response.status_code
    if case.path == "/v1/reports" or status != 200:
        outcome = {202: "accepted", 200: "duplicate"}.get(status, f"refused-{status}")
        for r in items:
            SENT.add(r.get("source"), r.get("event_id"), outcome)
        return
    results = orjson.loads(response.content)["results"]
    assert len(results) == len(items), (len(results), len(items))
    for r, res in zip(items, results):
        SENT.add(r.get("source"), r.get("event_id"), res["status"])


def report_failures(failures: list[str], ran: Counter, schema) -> None:
    labels = {r.ok().label for r in schema.get_all_operations()}
    print(f"{schema.raw_schema['info']['title']}: {sum(ran.values())} cases over {len(ran)} operations")
    assert set(ran) == labels, f"operations never exercised: {sorted(labels - set(ran))}"
    assert not failures, f"{len(failures)} (operation, mode) pairs failed, {sum(ran.values())} cases:\n" + \
        "\n".join(failures)


SESSION = requests.Session()  # one keep-alive connection instead of one per case


def call(case, secret: str, **kw):
    """Send with a valid credential, unless the case's negation is in its headers (a missing or
    mangled Authorization header): then as generated, and the answer must be a refusal."""
    meta = case.meta
    header = meta.components.get(ParameterLocation.HEADER) if meta is not None else None
    if header is not None and header.mode.is_negative:
        return case.call_and_validate(session=SESSION, **kw)
    return case.call_and_validate(session=SESSION, headers={"Authorization": f"Bearer {secret}"}, **kw)


def item_validator(schema):
    doc = {"components": schema.raw_schema["components"], "$ref": "#/components/schemas/ReportEvent"}
    return jsonschema_rs.validator_for(doc)


def check_batch_items(case, response, items_schema) -> None:
    """A batch answers 200 with one result per item (by contract, even when items are bad):
    then the body was a 1-500 list, and every item that breaks the documented schema is rejected."""
    if case.path != "/v1/reports:batch" or response.status_code != 200:
        return
    assert isinstance(case.body, dict) and isinstance(case.body.get("reports"), list), case.body
    items = case.body["reports"]
    results = orjson.loads(response.content)["results"]
    assert 1 <= len(items) <= 500 and len(results) == len(items)
    for item, res in zip(items, results):
        if not items_schema.is_valid(item):
            assert res["status"] == "rejected" and res["errors"], (item, res)


# --- with credentials --------------------------------------------------------------------------
def test_ingest_schema_with_a_source_key(sec_stack: EmbeddedStack):
    schema = live_schema(ingest_url(sec_stack))
    items_schema = item_validator(schema)

    def run(case):
        source = positive_report(case)
        # The batch answers 200 for bad items by contract; check_batch_items checks those instead.
        skip = [negative_data_rejection] if case.path == "/v1/reports:batch" else []
        response = call(case, KEYS[source], excluded_checks=skip)
        check_error_body(response, case)
        check_batch_items(case, response, items_schema)
        record_reports(case, response, source)

    report_failures(*fuzz(schema, FUZZ, run), schema)


def positive_notify(case) -> None:
    """A positive region filter gets a region that exists, and a positive silence one too and an
    end in the future (neither can be said in JSON Schema); the silence is for DKI Jakarta, so
    it never holds back the pipeline test's pages."""
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    if case.path == "/v1/incidents" and isinstance(case.query, dict) and case.query.get("region") is not None:
        case.query["region"] = random.Random(repr(case.query)).choice(IN_SCOPE["fkdm-kaltara"] + ["31", "32.73"])
    if case.method == "POST" and case.path == "/v1/silences" and isinstance(case.body, dict):
        case.body["matchers"] = {"region": "31"}
        case.body["ends_at"] = (datetime.now(WITA) + timedelta(minutes=10)).isoformat()


def test_notify_schema_with_an_operator_token(sec_stack: EmbeddedStack):
    schema = live_schema(notify_url(sec_stack))

    def run(case):
        positive_notify(case)
        token = random.Random(repr(case.path_parameters) + repr(case.query)).choice([OP_TOKEN, OP_TOKEN_HASHED])
        check_error_body(call(case, token), case)

    report_failures(*fuzz(schema, FUZZ, run), schema)


# --- without credentials -----------------------------------------------------------------------
def check_anonymous(case, response) -> None:
    check_error_body(response, case)
    if case.operation.definition.raw.get("security"):
        assert response.status_code == 401, (case.method, case.path, response.status_code, response.text[:300])
        assert response.headers.get("www-authenticate") in (["Bearer"], "Bearer")


@pytest.mark.parametrize("which", ["ingest", "notify"])
def test_schema_without_credentials(sec_stack: EmbeddedStack, which: str):
    schema = live_schema(ingest_url(sec_stack) if which == "ingest" else notify_url(sec_stack))
    report_failures(*fuzz(schema, NO_AUTH, lambda case: check_anonymous(case, case.call(session=SESSION))), schema)


# --- nothing half-accepted ---------------------------------------------------------------------
async def _events_on(bootstrap: str, topic: str) -> dict[tuple[str, str], int]:
    """(source, event_id) -> copies on `topic`, read to its end."""
    from tests.ingest.test_http import _read_to_end

    counts: dict[tuple[str, str], int] = {}
    for m in await _read_to_end(bootstrap, topic, 30):
        try:
            v = value(m)
        except Exception:
            continue
        if isinstance(v, dict):
            key = (v.get("source"), v.get("event_id"))
            counts[key] = counts.get(key, 0) + 1
    return counts


def test_nothing_fuzzed_was_half_accepted(sec_stack: EmbeddedStack):
    if not SENT.outcomes:
        pytest.skip("the schemathesis run did not send reports in this session")
    bootstrap = sec_stack.config.kafka.bootstrap_servers
    accepted = {k for k, o in SENT.outcomes.items() if "accepted" in o}
    refused = {k for k, o in SENT.outcomes.items() if not o & {"accepted", "duplicate"}}
    assert accepted, "schemathesis never got a report accepted: the positive path went untested"
    assert refused, "schemathesis never got a report refused"
    # Wait until every accepted report is visible, then read both topics to their end.
    asyncio.run(collect(bootstrap, [topics.REPORTS_V1], timeout_s=60,
                        where=lambda m: (value(m).get("source"), value(m).get("event_id")) in accepted,
                        done=lambda ms: len({(value(m)["source"], value(m)["event_id"]) for m in ms}) >= len(accepted)))
    v1 = asyncio.run(_events_on(bootstrap, topics.REPORTS_V1))
    raw = asyncio.run(_events_on(bootstrap, topics.REPORTS_RAW))
    problems = [f"accepted {k} is on reports.v1 {v1.get(k, 0)} times" for k in accepted if v1.get(k, 0) != 1]
    problems += [f"refused {k} ({sorted(SENT.outcomes[k])}) is on reports.v1" for k in refused if k in v1]
    problems += [f"{k} is on the raw topic, which the gateway never writes" for k in SENT.outcomes if k in raw]
    with redis.Redis.from_url(sec_stack.config.redis.url) as r:
        claimed = [k for k in refused if r.exists(dedup_key(*k))]
    problems += [f"refused {k} left a duplicate claim in Redis" for k in claimed]
    assert not problems, f"{len(problems)} of {len(SENT.outcomes)} reports:\n" + "\n".join(problems[:30])
