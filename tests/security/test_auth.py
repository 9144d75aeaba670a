"""Credentials and scope: API keys and operator tokens work in both configured forms (plain and
sha256), are held and compared only as hashes, in constant time; a source cannot publish
outside its region scope or under another source's name; and the code keeps it that way."""

from __future__ import annotations

import ast
import hashlib
import inspect
from pathlib import Path

import httpx
import orjson
import pytest

from shared.config import parse, sha256_hex
from services.ingest.api import Gateway
from services.notify import api as notify_api
from services.notify import links
from pantau import webhook
from tests.security.conftest import HASHED_KEY, OP_TOKEN, OP_TOKEN_HASHED, PLAIN_KEY
from tests.utils import report

ROOT = Path(__file__).resolve().parents[2]


def _post(c: httpx.Client, body: dict, key: str) -> httpx.Response:
    return c.post("/v1/reports", content=orjson.dumps(body),
                  headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})


# --- both configured forms work ------------------------------------------------------------------
def test_source_keys_configured_hashed_and_plain_both_work(ingest):
    assert _post(ingest, report(), HASHED_KEY).status_code == 202
    jabar = report(source="bawaslu-jabar", region_code="32.73.01")
    assert _post(ingest, jabar, PLAIN_KEY).status_code == 202


@pytest.mark.parametrize("key", [
    sha256_hex(HASHED_KEY),  # the stored hash is not itself a key
    HASHED_KEY.upper(), HASHED_KEY[:-1], HASHED_KEY + " x", " " + HASHED_KEY + "x",
])
def test_near_miss_keys_are_401_and_not_echoed(ingest, key):
    resp = _post(ingest, report(), key)
    assert resp.status_code == 401 and resp.json()["type"] == "urn:pantau:problem:unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"
    if key.strip():
        assert key.strip() not in resp.text


def test_operator_tokens_configured_plain_and_hashed_both_work(notify):
    for token in (OP_TOKEN, OP_TOKEN_HASHED):
        assert notify.get("/v1/incidents", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    for bad in (sha256_hex(OP_TOKEN_HASHED), OP_TOKEN + "x", OP_TOKEN.upper(), HASHED_KEY):
        resp = notify.get("/v1/incidents", headers={"Authorization": f"Bearer {bad}"})
        assert resp.status_code == 401 and bad not in resp.text


def test_notify_checks_the_token_before_anything_else(notify):
    """Without a token, a bad query is still 401: nothing about the API is told to strangers."""
    for path, params in (("/v1/incidents", {"limit": "0", "region": "x"}), ("/v1/silences", {"all": "maybe"})):
        resp = notify.get(path, params=params)
        assert resp.status_code == 401, resp.text
    assert notify.post("/v1/silences", content=b"{not json").status_code == 401


# --- region and source scope ----------------------------------------------------------------------
@pytest.mark.parametrize("region", ["32.73", "64", "64.71", "31.71.01"])
def test_outside_its_regions_is_403_naming_the_region(ingest, region):
    resp = _post(ingest, report(region_code=region), HASHED_KEY)
    body = resp.json()
    assert resp.status_code == 403 and body["type"] == "urn:pantau:problem:forbidden", body
    assert "region_code" in body["detail"] and region in body["detail"] and "65" in body["detail"]


def test_a_prefix_is_not_a_string_prefix(ingest):
    """Scope `65` must not let `6` or `650` through, nor scope `32.73` take `32.7`."""
    for region in ("65.71", "65.71.02", "65.71.02.1001"):
        assert _post(ingest, report(region_code=region), HASHED_KEY).status_code == 202
    jabar = report(source="bawaslu-jabar", region_code="32.04.05")  # inside 32.04, listed
    assert _post(ingest, jabar, PLAIN_KEY).status_code == 202
    for region in ("32", "32.71", "32.74"):
        resp = _post(ingest, report(source="bawaslu-jabar", region_code=region), PLAIN_KEY)
        assert resp.status_code == 403, (region, resp.text)


def test_a_key_cannot_publish_as_another_source(ingest):
    resp = _post(ingest, report(source="bawaslu-jabar", region_code="32.73"), HASHED_KEY)
    assert resp.status_code == 403 and "source" in resp.json()["detail"]


def test_batch_items_outside_scope_are_rejected_one_by_one(ingest):
    items = [report(), report(region_code="32.73"), report(source="bawaslu-jabar")]
    resp = ingest.post("/v1/reports:batch", content=orjson.dumps({"reports": items}),
                       headers={"Authorization": f"Bearer {HASHED_KEY}", "Content-Type": "application/json"})
    assert resp.status_code == 200
    a, b, c = resp.json()["results"]
    assert a["status"] == "accepted"
    assert b["status"] == "rejected" and b["errors"][0]["field"] == "region_code" and "32.73" in b["errors"][0]["message"]
    assert c["status"] == "rejected" and c["errors"][0]["field"] == "source"


# --- held and compared as hashes ---------------------------------------------------------------
CONFIG = f"""
sources:
  - {{id: a, api_key: "plain-key-aaaaaaaaaaaa", regions: ["65"]}}
  - {{id: b, api_key_sha256: "{sha256_hex('hashed-key-bbbbbbbbbb')}", regions: ["65"]}}
operators:
  - {{id: o1, name: O1, token: "plain-token-cccccccccc"}}
  - {{id: o2, name: O2, token_sha256: "{sha256_hex('hashed-token-dddddddd')}"}}
"""


def test_services_keep_only_hashes_of_credentials():
    config = parse(CONFIG, env={})
    gw = Gateway(config)
    assert set(gw.by_key_hash) == {sha256_hex("plain-key-aaaaaaaaaaaa"), sha256_hex("hashed-key-bbbbbbbbbb")}
    ctx = notify_api.ApiContext(store=None, links=links.LinkMaker(b"k" * 32, "http://x", 60),  # type: ignore[arg-type]
                                operators=config.operators)
    assert [h for h, _ in ctx._hashes] == [sha256_hex("plain-token-cccccccccc"), sha256_hex("hashed-token-dddddddd")]
    # A plain secret is a SecretStr: printing the config never shows it.
    shown = repr(config) + str(config.model_dump())
    assert "plain-key-aaaaaaaaaaaa" not in shown and "plain-token-cccccccccc" not in shown


def test_sha256_hex_is_plain_sha256_so_operators_can_hash_keys_themselves():
    assert sha256_hex("kunci") == hashlib.sha256(b"kunci").hexdigest()


# Code audit, kept by test: no secret, hash, signature or MAC is compared with == or != (which
# returns at the first differing byte); the ingest gateway looks keys up by their hash instead.
AUDITED = [ROOT / "services" / "ingest" / "api.py", ROOT / "services" / "notify" / "api.py",
           ROOT / "services" / "notify" / "links.py", ROOT / "services" / "notify" / "channels" / "webhook.py",
           ROOT / "shared" / "config.py", ROOT / "pantau" / "webhook.py", ROOT / "shared" / "signing.py"]
SECRETISH = ("key", "token", "secret", "sig", "mac", "digest", "hash", "presented", "password")


def _names(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id.lower())
        elif isinstance(n, ast.Attribute):
            out.add(n.attr.lower())
        elif isinstance(n, ast.Call) and isinstance(n.func, (ast.Name, ast.Attribute)):
            out.add((n.func.id if isinstance(n.func, ast.Name) else n.func.attr).lower())
    return out


@pytest.mark.parametrize("path", AUDITED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_secret_is_compared_with_equality(path):
    tree = ast.parse(path.read_text())
    offenders = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            operands = [node.left, *node.comparators]
            # Against a literal ("bearer", 0) or between booleans ((a is None) == (b is None)):
            # nothing there depends on a secret's bytes.
            if any(isinstance(o, ast.Constant) for o in operands) or all(isinstance(o, ast.Compare) for o in operands):
                continue
            hits = [n for n in _names(node) if any(s in n for s in SECRETISH)]
            if hits:
                offenders.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not offenders, "secret-dependent == / != comparisons:\n" + "\n".join(offenders)


def test_constant_time_comparisons_are_in_place():
    assert "compare_digest" in inspect.getsource(links.verify)
    assert "compare_digest" in inspect.getsource(webhook.check_signature)
    assert "compare_digest" in inspect.getsource(notify_api.create_app)
    # The gateway looks the key up by its sha256: the lookup's timing depends on the hash, which
    # an attacker cannot steer towards a key without a preimage.
    assert "by_key_hash.get(sha256_hex(" in inspect.getsource(Gateway.authenticate)
