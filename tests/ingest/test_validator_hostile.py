"""Hostile input on `pantau.reports.raw`: arbitrary bytes, arbitrary JSON, reports with a
field swapped for anything, corrupted bytes, odd keys and repeats. Each message must come
out exactly once (on reports.v1, or on the DLQ with the reason the contract gives), or be a
recognised repeat, and the validator must still be running afterwards.

Hypothesis generates the messages and produces them as it goes (one producer for the whole
run); one wait and one read of the output topics at the end check them all, which keeps a
few hundred messages within seconds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.schemas import validate_json
from tests.ingest.test_validator import Origin, origin_id, outputs, produce_raw, wait_processed
from tests.utils import report, value

MAX_BYTES = 64 * 1024

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
# Strings with lone surrogates, control characters and other text JSON can carry.
ODD_TEXT = st.text(st.characters(codec=None, categories=["Cs", "Cc", "Zl", "Co", "So", "Lo"]), max_size=10)
REGION_CODES = ["65", "65.71", "65.71.02", "65.71.02.1001", "31.71", "99", "65.99", "65.71.99", "65.71.02.9999",
                "6571", "65.7"]
FIELDS = ["event_id", "source", "region_code", "category", "severity", "occurred_at", "title", "description",
          "verified", "casualties", "participants", "location", "attributes", "schema_version", "kecamatan"]


@dataclass
class Sent:
    key: bytes | None
    value: bytes | None
    expect: str  # "report" or a DLQ reason
    event: tuple[str, str] | None = None  # (source, event_id) of a valid report


def expected(raw: bytes | None) -> tuple[str, tuple[str, str] | None]:
    """What the contract says becomes of `raw`, worked out without the validator."""
    if raw is None or raw == b"":
        return "invalid_json", None
    if len(raw) > MAX_BYTES:
        return "too_large", None
    r, errs = validate_json(raw)  # must answer, never raise
    if r is not None:
        return "report", (r.source, r.event_id)
    if any(e["message"].startswith("invalid JSON") for e in errs):
        return "invalid_json", None
    if all(e["field"] == "region_code" and e["message"].startswith("unknown region") for e in errs):
        return "unknown_region", None
    return "invalid", None


def test_hostile_raw_messages_each_come_out_exactly_once(stack):
    bootstrap = stack.config.kafka.bootstrap_servers
    run = f"hx{time.time_ns()}"
    counter = iter(range(10**9))
    sent: list[tuple[Origin, Sent]] = []
    valid_before: list[bytes] = []

    def fresh_report(changes: dict) -> dict:
        r = report(event_id=f"{run}-{next(counter)}")
        for k, v in changes.items():
            if k == "event_id" and isinstance(v, str):
                v = f"{run}-m-{v}"  # arbitrary, but never someone else's event
            r[k] = v
        return {k: v for k, v in r.items() if v is not ...}

    def encode(obj, ascii_only: bool) -> bytes:
        return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")

    @st.composite
    def message(draw) -> bytes | None:
        kind = draw(st.sampled_from(["bytes", "json", "mutated", "odd_text", "corrupted", "repeat", "null", "good",
                                     "region"]))
        if kind == "bytes":
            return draw(st.binary(max_size=300))
        if kind == "json":
            return encode(draw(JSON), draw(st.booleans()))
        if kind == "null":
            return None
        if kind == "good":
            return encode(fresh_report({}), False)
        if kind == "repeat":
            # Draw the same way whatever was sent before: Hypothesis needs generation that does
            # not depend on outside state, only the value picked does.
            pick = draw(st.integers(0, 10**6))
            return valid_before[pick % len(valid_before)] if valid_before else encode(fresh_report({}), False)
        if kind == "region":
            code = draw(st.sampled_from(REGION_CODES) | st.from_regex(r"\A\d{2}(\.\d{2}(\.\d{2}(\.\d{4})?)?)?\Z"))
            return encode(fresh_report({"region_code": code}), False)
        if kind == "odd_text":
            field = draw(st.sampled_from(["title", "description", "event_id", "region_code", "occurred_at"]))
            return encode(fresh_report({field: draw(ODD_TEXT)}), draw(st.booleans()))
        base = encode(fresh_report({}), False)
        if kind == "corrupted":
            at = draw(st.integers(0, 10**4)) % len(base)
            junk = draw(st.binary(min_size=0, max_size=4))
            cut = draw(st.integers(0, 4))
            return base[:at] + junk + base[at + cut:]
        changes = draw(st.dictionaries(st.sampled_from(FIELDS), JSON | st.just(...), min_size=1, max_size=3))
        return encode(fresh_report(changes), draw(st.booleans()))

    keys = st.none() | st.binary(max_size=16) | st.sampled_from([b"65.71", b"65", b"32.73"])

    with asyncio.Runner() as runner:
        async def start_producer() -> AIOKafkaProducer:
            p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
            await p.start()
            return p

        producer = runner.run(start_producer())
        try:
            @settings(max_examples=150, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
            @given(batch=st.lists(st.tuples(keys, message()), min_size=1, max_size=5))
            def produce_examples(batch):
                items = []
                for key, raw in batch:
                    if key is None and raw is None:
                        key = b""  # aiokafka refuses a message with neither
                    expect, event = expected(raw)
                    items.append(Sent(key, raw, expect, event))
                    if expect == "report" and raw not in valid_before:
                        valid_before.append(raw)
                origins = runner.run(produce_raw(bootstrap, [i.value for i in items], keys=[i.key for i in items],
                                                 producer=producer))
                sent.extend(zip(origins, items))

            produce_examples()
        finally:
            runner.run(producer.stop())

        runner.run(wait_processed(bootstrap, stack.config.ingest.validator_group, [o for o, _ in sent]))
        v1, dlq = runner.run(outputs(bootstrap))

    assert stack.children["ingest-validator"].alive, "the validator died on hostile input"
    problems: list[str] = []
    groups: dict[tuple[str, str], list[Origin]] = {}
    for origin, s in sent:
        on_v1 = v1.get(origin_id(origin), [])
        on_dlq = dlq.get(origin, [])
        if s.expect == "report":
            groups.setdefault(s.event, []).append(origin)
            if on_dlq:
                problems.append(f"{origin} valid but on the DLQ: {s.value[:200]!r}")
            continue
        if on_v1 or len(on_dlq) != 1:
            problems.append(f"{origin} {s.expect}: {len(on_v1)} on reports.v1, {len(on_dlq)} on the DLQ: "
                            f"{(s.value or b'')[:200]!r}")
            continue
        rec = value(on_dlq[0])
        if rec["reason"] != s.expect:
            problems.append(f"{origin} reason {rec['reason']!r}, expected {s.expect!r}: {(s.value or b'')[:200]!r}")
        if base64.b64decode(rec["payload_b64"]) != (s.value or b"") or on_dlq[0].key != s.key:
            problems.append(f"{origin} DLQ payload or key differs from what was sent")
    for event, origins in groups.items():
        written = [o for o in origins if origin_id(o) in v1]
        copies = sum(len(v1[origin_id(o)]) for o in written)
        if copies != 1:
            problems.append(f"{event} sent {len(origins)} times, on reports.v1 {copies} times")
    assert not problems, f"{len(problems)} of {len(sent)} messages mishandled:\n" + "\n".join(problems[:30])
    assert any(len(o) > 1 for o in groups.values()), "no repeats were generated"
    assert {s.expect for _, s in sent} >= {"report", "invalid_json", "invalid", "unknown_region"}
    assert len(sent) >= 150
