"""docs/asyncapi.yaml: valid against the AsyncAPI 3.0.0 JSON Schema (vendored from the npm
package @asyncapi/specs, Apache-2.0; nothing is downloaded), current (regenerating gives the
same file), covering every contract topic, and its payload schemas accept what the services
really write and refuse what they must not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from shared import topics
from shared.asyncapi import TOPICS, document, render
from shared.schemas import ReportEvent, enriched, validate_obj
from tests.utils import report

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "asyncapi.yaml"
SPEC = json.loads((Path(__file__).parent / "data" / "asyncapi-3.0.0.schema.json").read_text())


def payload_errors(doc: dict[str, Any], address: str, value: Any) -> list[str]:
    """What is wrong with `value` as a message on `address`, by the document's own schemas."""
    (channel,) = [c for c in doc["channels"].values() if c["address"] == address]
    (ref,) = [m["$ref"] for m in channel["messages"].values()]
    message = doc["components"]["messages"][ref.rsplit("/", 1)[1]]
    schema = {"allOf": [message["payload"]], "components": doc["components"]}
    v = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(value)]


def test_the_committed_document_is_valid_asyncapi_3():
    doc = yaml.safe_load(DOC.read_text(encoding="utf-8"))
    assert doc["asyncapi"] == "3.0.0"
    validator = jsonschema.validators.validator_for(SPEC)(SPEC)
    assert [e.message for e in validator.iter_errors(doc)] == []
    # The validator does look inside: a bad operation is refused.
    doc["operations"]["receiveReportsRaw"]["action"] = "publish"
    assert list(validator.iter_errors(doc))


def test_the_committed_document_is_current():
    assert DOC.read_text(encoding="utf-8") == render(), "docs/asyncapi.yaml is stale: run `pantau asyncapi`"
    r = CliRunner().invoke(app, ["asyncapi", "--check", "--out", str(DOC)])
    assert r.exit_code == 0, r.output


def test_check_fails_on_a_stale_file(tmp_path: Path):
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text(render().replace("pantau.scores.v1", "pantau.scores.v0"), encoding="utf-8")
    assert CliRunner().invoke(app, ["asyncapi", "--check", "--out", str(stale)]).exit_code == 1
    assert CliRunner().invoke(app, ["asyncapi", "--out", str(stale)]).exit_code == 0
    assert stale.read_text(encoding="utf-8") == render()


def test_every_contract_topic_is_documented_with_its_key():
    doc = document()
    assert {c["address"] for c in doc["channels"].values()} == set(topics.ALL)
    assert len(TOPICS) == len(topics.ALL)
    for m in doc["components"]["messages"].values():
        assert m["bindings"]["kafka"]["key"]["description"]
    assert "pantau-received-at" in doc["components"]["messages"]["ScoreUpdate"]["headers"]["properties"]


def test_payload_schemas_accept_what_the_services_write_and_refuse_bad_records():
    doc = document()
    body = report(region_code="65.01", severity=5, casualties=2, location={"lat": 2.84, "lon": 117.37})
    assert payload_errors(doc, topics.REPORTS_RAW, body) == []
    assert payload_errors(doc, topics.REPORTS_RAW, {**body, "severity": 6})
    assert payload_errors(doc, topics.REPORTS_RAW, {**body, "colour": "red"})  # unknown fields are refused

    valid, errs = validate_obj(body)
    assert isinstance(valid, ReportEvent) and not errs
    accepted = orjson.loads(enriched(valid, "2026-12-02T03:00:00.000Z", "raw-0-17"))
    assert payload_errors(doc, topics.REPORTS_V1, accepted) == []
    assert payload_errors(doc, topics.REPORTS_V1, {**accepted, "received_at": 5})


@pytest.mark.parametrize("address, record", [
    (topics.SCORES_V1, {"region_code": "65.01", "category": "communal_clash", "bucket_start": "2026-12-02T00:00:00+08:00",
                        "bucket_end": "2026-12-03T00:00:00+08:00", "observed": 1, "weighted": 1.0, "expected": 0.2,
                        "upper": 1.5, "method": "glr", "alarm": True, "level": "awas",
                        "reasons": ["severity 5 report"], "report_ids": ["fkdm:ev-1"],
                        "computed_at": "2026-12-02T03:00:00.000Z"}),
    (topics.ESCALATIONS_V1, {"version": "1", "incident_id": "i", "status": "triggered", "level": "awas",
                             "region_code": "65.01", "region_name": "Kabupaten Bulungan", "category": "communal_clash",
                             "step": 0, "summary": "s", "reasons": [], "report_ids": [], "ack_url": "",
                             "opened_at": "2026-12-02T03:00:00.000Z", "updated_at": "2026-12-02T03:00:00.000Z"}),
])
def test_a_bad_level_is_refused(address: str, record: dict[str, Any]):
    doc = document()
    assert payload_errors(doc, address, record) == []
    assert payload_errors(doc, address, {**record, "level": "merah"})
