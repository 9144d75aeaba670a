"""Both OpenAPI documents state the rules the code enforces, from the models and route
declarations (shared/openapi.py adds only the body models and the bearer schemes). Built
in-process: no broker or Redis is needed to make a document."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from services.ingest.api import MAX_BATCH, create_app as ingest_app
from services.notify.api import ApiContext, create_app as notify_app
from services.notify.links import LinkMaker
from services.notify.store import IncidentStore
from shared.categories import CATEGORIES
from shared.config import parse
from shared.regions import CODE_PATTERN

PROBLEM = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture(scope="module")
def ingest_doc() -> dict[str, Any]:
    return ingest_app(parse("sources: [{id: a, api_key: k, regions: ['65']}]", env={})).app.openapi()


@pytest.fixture(scope="module")
def notify_doc() -> dict[str, Any]:
    ctx = ApiContext(store=IncidentStore(aioredis.Redis()), links=LinkMaker(b"x" * 32, "http://x", 60), operators=[])
    return notify_app(ctx).openapi()


def _operations(doc: dict[str, Any]):
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            yield f"{method.upper()} {path}", op


def test_the_report_schema_states_the_rules_the_validator_checks(ingest_doc):
    schemas = ingest_doc["components"]["schemas"]
    fields = schemas["ReportEvent"]["properties"]
    assert fields["region_code"] == {
        "type": "string", "maxLength": 13, "pattern": CODE_PATTERN.pattern, "title": "Region Code",
        "description": "a Kemendagri region code in the registry, at any level"}
    assert fields["occurred_at"] == {
        "type": "string", "maxLength": 40, "format": "date-time", "title": "Occurred At",
        "description": "RFC 3339 with offset; not before 1970, at most 5 minutes ahead"}
    assert fields["attributes"]["anyOf"][0] == {
        "type": "object", "maxProperties": 32, "propertyNames": {"minLength": 1, "maxLength": 64},
        "additionalProperties": {"type": "string", "maxLength": 500}}
    assert fields["source"]["pattern"] == "^[a-z0-9-]+$" and fields["source"]["maxLength"] == 64
    assert schemas["ReportEvent"]["additionalProperties"] is False
    batch = schemas["BatchBody"]
    assert batch["additionalProperties"] is False and batch["required"] == ["reports"]
    assert batch["properties"]["reports"] == {"type": "array", "items": {"$ref": "#/components/schemas/ReportEvent"},
                                              "minItems": 1, "maxItems": MAX_BATCH, "title": "Reports"}


def test_publishing_needs_the_source_key_and_names_its_body(ingest_doc):
    assert ingest_doc["components"]["securitySchemes"] == {
        "sourceApiKey": {"type": "http", "scheme": "bearer", "description": "the source's API key"},
        "operatorToken": {"type": "http", "scheme": "bearer", "description": "an operator's token"}}
    for path, model in (("/v1/reports", "ReportEvent"), ("/v1/reports:batch", "BatchBody")):
        op = ingest_doc["paths"][path]["post"]
        assert op["security"] == [{"sourceApiKey": []}]
        assert op["requestBody"] == {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{model}"}}}}


def test_the_silence_and_override_bodies_state_their_rules(notify_doc):
    schemas = notify_doc["components"]["schemas"]
    matchers = schemas["Matchers"]
    assert matchers["minProperties"] == 1 and matchers["additionalProperties"] is False
    assert matchers["properties"]["region"]["anyOf"][0] == {"type": "string", "pattern": CODE_PATTERN.pattern}
    assert matchers["properties"]["category"]["anyOf"][0] == {"type": "string", "enum": list(CATEGORIES)}
    assert schemas["SilenceBody"]["properties"]["ends_at"] == {"type": "string", "format": "date-time",
                                                                "title": "Ends At"}
    for f in ("start", "end"):
        assert schemas["OverrideBody"]["properties"][f]["format"] == "date-time"
    assert notify_doc["paths"]["/v1/silences"]["post"]["requestBody"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/SilenceBody"}


def test_operator_routes_need_the_token_and_the_ack_link_does_not(notify_doc):
    assert notify_doc["components"]["securitySchemes"] == {
        "operatorToken": {"type": "http", "scheme": "bearer", "description": "an operator token"}}
    for name, op in _operations(notify_doc):
        if " /v1/" in name:
            assert op.get("security") == [{"operatorToken": []}], name
            assert "401" in op["responses"], name
        elif " /ack/" in name:
            assert "security" not in op, name


@pytest.mark.parametrize("doc", ["ingest_doc", "notify_doc"])
def test_every_error_answer_is_documented_as_a_problem_never_fastapis_own_shape(doc, request):
    doc = request.getfixturevalue(doc)
    assert not {"HTTPValidationError", "ValidationError"} & set(doc["components"]["schemas"])
    for name, op in _operations(doc):
        if op.get("parameters") or "requestBody" in op:
            assert "422" in op["responses"] or name.startswith("GET /metrics"), name
        for status, answer in op["responses"].items():
            if status.startswith(("4", "5")):
                assert answer["content"] == {"application/problem+json": {"schema": PROBLEM}}, (name, status)
