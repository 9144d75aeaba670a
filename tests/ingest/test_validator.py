"""The raw-topic validator on the session stack: good reports reach `pantau.reports.v1`,
repeats are counted duplicates, and every kind of bad message lands on the DLQ with its
reason, the field at fault and the original bytes.

The helpers at the top (`produce_raw`, `wait_processed`, `read_topics`, `metric_value`) are
shared with test_validator_crash.py and test_validator_hostile.py.
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from shared import topics
from tests.utils import auth, report, value

# --- helpers ---------------------------------------------------------------------------------

Origin = tuple[int, int]  # (partition, offset) of a raw message


def origin_id(origin: Origin) -> str:
    return f"raw-{origin[0]}-{origin[1]}"


async def produce_raw(
    bootstrap: str,
    values: list[bytes | None],
    keys: list[bytes | None] | bytes | None = b"65.71",
    partitions: list[int] | None = None,
    producer: AIOKafkaProducer | None = None,
) -> list[Origin]:
    """Produce `values` to pantau.reports.raw (acks=all) and return where each one landed."""
    own = producer is None
    if own:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                    max_request_size=4 << 20)
        await producer.start()
    try:
        key_list = keys if isinstance(keys, list) else [keys] * len(values)
        futs = [
            await producer.send(topics.REPORTS_RAW, v, key=k, partition=None if partitions is None else partitions[i])
            for i, (v, k) in enumerate(zip(values, key_list))
        ]
        return [(md.partition, md.offset) for md in await asyncio.gather(*futs)]
    finally:
        if own:
            await producer.stop()


async def committed_offsets(bootstrap: str, group: str, partitions: list[int]) -> dict[int, int]:
    """The validator group's committed offset per raw partition (-1 when none yet).

    A plain consumer with the group id reads the offsets without joining the group."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        out = {}
        for p in partitions:
            got = await c.committed(TopicPartition(topics.REPORTS_RAW, p))
            out[p] = -1 if got is None else got
        return out
    finally:
        await c.stop()


async def wait_processed(bootstrap: str, group: str, origins: list[Origin], timeout_s: float = 60) -> None:
    """Wait until the validator has committed past every origin. It commits a batch only
    after the batch's output was acknowledged, so afterwards all of it is readable."""
    need: dict[int, int] = {}
    for p, o in origins:
        need[p] = max(need.get(p, -1), o + 1)
    deadline = time.monotonic() + timeout_s
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        while True:
            have = {p: await c.committed(TopicPartition(topics.REPORTS_RAW, p)) for p in need}
            if all(have[p] is not None and have[p] >= need[p] for p in need):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"validator did not commit {need} within {timeout_s}s; committed {have}")
            await asyncio.sleep(0.05)  # poll interval of the condition above, not a wait for it
    finally:
        await c.stop()


async def read_topics(bootstrap: str, names: list[str]) -> list[Any]:
    """Every message on `names`, from the start up to the end offsets as of the call."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    try:
        tps = [TopicPartition(t, p) for t in names for p in (c.partitions_for_topic(t) or await _parts(c, t))]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        await c.seek_to_beginning(*tps)
        out: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            got = await c.getmany(*remaining, timeout_ms=500, max_records=10_000)
            for tp, ms in got.items():
                out.extend(ms)
            for tp in list(remaining):
                if await c.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await c.stop()


async def _parts(c: AIOKafkaConsumer, topic: str) -> set[int]:
    await c._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
    return c.partitions_for_topic(topic) or set()


async def outputs(bootstrap: str) -> tuple[dict[str, list[Any]], dict[Origin, list[Any]]]:
    """reports.v1 messages by ingest_id and DLQ messages by raw (partition, offset); lists,
    so that a test can see a message written twice."""
    v1: dict[str, list[Any]] = {}
    dlq: dict[Origin, list[Any]] = {}
    for m in await read_topics(bootstrap, [topics.REPORTS_V1, topics.REPORTS_DLQ]):
        v = value(m)
        if m.topic == topics.REPORTS_V1:
            v1.setdefault(v["ingest_id"], []).append(m)
        elif v.get("topic") == topics.REPORTS_RAW:
            dlq.setdefault((v["partition"], v["offset"]), []).append(m)
    return v1, dlq


def metric_value(port: int, name: str, **labels: str) -> float:
    """One sample of the validator's Prometheus endpoint (0 when not exported yet)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def parse_rfc3339(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert dt.tzinfo is not None, text
    return dt


def settle(stack, origins: list[Origin]) -> tuple[dict[str, list[Any]], dict[Origin, list[Any]]]:
    bootstrap = stack.config.kafka.bootstrap_servers
    asyncio.run(wait_processed(bootstrap, stack.config.ingest.validator_group, origins))
    return asyncio.run(outputs(bootstrap))


def duplicates_counted(stack) -> float:
    return metric_value(stack.config.ingest.metrics_port, "pantau_reports_duplicate_total",
                        source="fkdm-kaltara", path="raw")


# --- accepted reports ------------------------------------------------------------------------

def test_good_raw_reports_reach_reports_v1(stack):
    reports = [
        report(),  # kecamatan in Kota Tarakan
        report(region_code="65", severity=5, casualties=2),  # province level
        report(region_code="65.01.01.1001", verified=True, participants=300,  # desa in Bulungan
               location={"lat": 2.84, "lon": 117.37}, attributes={"forum": "FKDM"},
               description="Massa berkumpul", schema_version=1),
        report(region_code="32.73", source="bawaslu-jabar", category="election_dispute"),
    ]
    origins = asyncio.run(produce_raw(stack.config.kafka.bootstrap_servers, [orjson.dumps(r) for r in reports]))
    v1, dlq = settle(stack, origins)

    expected_keys = [b"65.71", b"65", b"65.01", b"32.73"]
    for r, origin, key in zip(reports, origins, expected_keys):
        msgs = v1.get(origin_id(origin), [])
        assert len(msgs) == 1, (origin, r)
        m = msgs[0]
        body = value(m)
        assert m.key == key
        assert body["ingest_id"] == f"raw-{origin[0]}-{origin[1]}"
        parse_rfc3339(body["received_at"])
        assert {k: body[k] for k in r} == r
        assert body.get("verified", False) is r.get("verified", False)
        assert origin not in dlq


def test_raw_repeats_are_duplicates_and_counted(stack):
    first = report()
    # The same (source, event_id) again: byte for byte, and with other content.
    repeats = [first, {**first, "severity": 5, "title": "Bentrok"}]
    later = report()  # after the repeats on the same partition: the batch holding them is done
    before = duplicates_counted(stack)
    origins = asyncio.run(produce_raw(stack.config.kafka.bootstrap_servers,
                                      [orjson.dumps(r) for r in [first, *repeats, later]]))
    v1, dlq = settle(stack, origins)

    assert len(v1[origin_id(origins[0])]) == 1
    assert len(v1[origin_id(origins[-1])]) == 1
    for o in origins[1:-1]:
        assert origin_id(o) not in v1 and o not in dlq
    same_event = [ms for ms in v1.values() for m in ms
                  if value(m)["event_id"] == first["event_id"] and value(m)["source"] == first["source"]]
    assert len(same_event) == 1
    assert duplicates_counted(stack) >= before + 2


def test_raw_repeat_of_a_report_accepted_over_http_is_a_duplicate(stack, ingest):
    r = report()
    resp = ingest.post("/v1/reports", json=r, headers=auth())
    assert resp.status_code == 202, resp.text
    before = duplicates_counted(stack)
    origins = asyncio.run(produce_raw(stack.config.kafka.bootstrap_servers, [orjson.dumps(r)]))
    v1, dlq = settle(stack, origins)

    assert origin_id(origins[0]) not in v1 and origins[0] not in dlq
    copies = [m for ms in v1.values() for m in ms if value(m)["event_id"] == r["event_id"]]
    assert len(copies) == 1 and not value(copies[0])["ingest_id"].startswith("raw-")
    assert duplicates_counted(stack) >= before + 1


def test_same_event_id_from_another_source_is_not_a_duplicate(stack):
    a = report()
    b = report(event_id=a["event_id"], source="bawaslu-jabar", region_code="32.04")
    origins = asyncio.run(produce_raw(stack.config.kafka.bootstrap_servers, [orjson.dumps(a), orjson.dumps(b)]))
    v1, _ = settle(stack, origins)
    assert all(len(v1.get(origin_id(o), [])) == 1 for o in origins)


# --- the dead-letter queue --------------------------------------------------------------------

def _big_report() -> bytes:
    body = orjson.dumps(report(description="x" * 5000, attributes={f"k{i}": "y" * 500 for i in range(32)}))
    # Valid JSON, padded with whitespace past 64 KiB: only the size is wrong.
    return body + b" " * (64 * 1024 + 1 - len(body))


# name: (raw value, reason, a field named in errors)
DLQ_CASES: dict[str, tuple[bytes | None, str, str]] = {
    "truncated_json": (orjson.dumps(report())[:-10], "invalid_json", "(body)"),
    "invalid_utf8": (b'{"title": "\xff\xfe rusak"}', "invalid_json", "(body)"),
    "invalid_utf8_only": (b"\xc3\x28\xa0\xa1", "invalid_json", "(body)"),
    "empty_value": (b"", "invalid_json", "(body)"),
    "null_value": (None, "invalid_json", "(body)"),
    "severity_string": (orjson.dumps(report(severity="5")), "invalid", "severity"),
    "severity_bool": (orjson.dumps(report(severity=True)), "invalid", "severity"),
    "verified_int": (orjson.dumps(report(verified=1)), "invalid", "verified"),
    "unknown_field": (orjson.dumps(report(kecamatan="Tarakan Barat")), "invalid", "kecamatan"),
    "missing_title": (orjson.dumps(report(title=...)), "invalid", "title"),
    "json_array": (orjson.dumps([report()]), "invalid", "(body)"),
    "json_string": (b'"laporan"', "invalid", "(body)"),
    "json_number": (b"42", "invalid", "(body)"),
    "json_null": (b"null", "invalid", "(body)"),
    "unknown_region": (orjson.dumps(report(region_code="65.99")), "unknown_region", "region_code"),
    "unknown_desa": (orjson.dumps(report(region_code="65.71.02.9999")), "unknown_region", "region_code"),
    "too_large": (_big_report(), "too_large", "(body)"),
}


@pytest.fixture(scope="module")
def dead_letters(stack) -> dict[str, tuple[Origin, bytes | None, list[Any], dict[str, list[Any]]]]:
    """Produce every DLQ case once (each with its own key) and read what came out."""
    names = list(DLQ_CASES)
    keys = [f"key-{n}-{time.time_ns()}".encode() for n in names]
    origins = asyncio.run(produce_raw(stack.config.kafka.bootstrap_servers,
                                      [DLQ_CASES[n][0] for n in names], keys=keys))
    v1, dlq = settle(stack, origins)
    return {n: (o, k, dlq.get(o, []), v1) for n, o, k in zip(names, origins, keys)}


@pytest.mark.parametrize("case", list(DLQ_CASES))
def test_bad_raw_message_goes_to_dlq_with_its_reason(dead_letters, case):
    raw, reason, field = DLQ_CASES[case]
    origin, key, msgs, v1 = dead_letters[case]
    assert origin_id(origin) not in v1
    assert len(msgs) == 1, f"{case}: {len(msgs)} DLQ records for {origin}"
    m = msgs[0]
    rec = value(m)
    assert rec["reason"] == reason
    assert field in [e["field"] for e in rec["errors"]], rec["errors"]
    assert all(set(e) == {"field", "message"} and e["message"] for e in rec["errors"])
    assert (rec["topic"], rec["partition"], rec["offset"]) == (topics.REPORTS_RAW, *origin)
    parse_rfc3339(rec["received_at"])
    assert base64.b64decode(rec["payload_b64"], validate=True) == (raw or b"")
    assert m.key == key  # the key as received


def test_dlq_names_every_bad_field(stack):
    bad = report(severity=9, category="kerusuhan", occurred_at="kemarin", foo=1)
    (origin,) = asyncio.run(produce_raw(stack.config.kafka.bootstrap_servers, [orjson.dumps(bad)]))
    _, dlq = settle(stack, [origin])
    rec = value(dlq[origin][0])
    assert rec["reason"] == "invalid"
    assert {e["field"] for e in rec["errors"]} == {"severity", "category", "occurred_at", "foo"}
    assert [e["message"] for e in rec["errors"] if e["field"] == "foo"] == ["unknown field"]


def test_unknown_region_beside_another_error_is_invalid(stack):
    # `unknown_region` is for reports whose only problem is the region.
    bad = report(region_code="65.99", severity=0)
    (origin,) = asyncio.run(produce_raw(stack.config.kafka.bootstrap_servers, [orjson.dumps(bad)]))
    _, dlq = settle(stack, [origin])
    rec = value(dlq[origin][0])
    assert rec["reason"] == "invalid"
    assert {e["field"] for e in rec["errors"]} == {"region_code", "severity"}


def test_dlq_messages_are_counted_by_reason(stack):
    port = stack.config.ingest.metrics_port
    before = metric_value(port, "pantau_dlq_messages_total", reason="unknown_region")
    (origin,) = asyncio.run(produce_raw(stack.config.kafka.bootstrap_servers,
                                        [orjson.dumps(report(region_code="99"))]))
    settle(stack, [origin])
    assert metric_value(port, "pantau_dlq_messages_total", reason="unknown_region") >= before + 1


def test_a_raw_message_handed_again_is_processed_once():
    """Its DLQ record or report would otherwise be written twice (services/ingest/validator.py
    `unseen`): in one batch, as a fetch over a batch being merged hands it, or in the next."""
    from aiokafka.structs import ConsumerRecord

    from services.ingest.validator import unseen

    def rec(p: int, o: int) -> ConsumerRecord:
        return ConsumerRecord(topics.REPORTS_RAW, p, o, 0, 0, None, b"{}", None, 0, 2, [])

    after: dict[int, int] = {}
    first = unseen([rec(3, 27), rec(3, 28), rec(3, 29), rec(3, 29), rec(1, 29)], after)
    assert [(m.partition, m.offset) for m in first] == [(3, 27), (3, 28), (3, 29), (1, 29)]
    second = unseen([rec(3, 29), rec(3, 30), rec(1, 29)], after)
    assert [(m.partition, m.offset) for m in second] == [(3, 30)]
