"""`pantau send FILE --kafka BOOTSTRAP`: the reference Kafka publisher.

What an integrated system's batch job would copy: plain kafka-python, synchronous, one report
per line of a JSON Lines file, each written to `pantau.reports.raw` and confirmed by the
broker before the next:

  * key: the report's `region_code` (UTF-8), the contract's key for the raw topic; the value
    is the line's bytes as they are. The contract names no headers for this topic, so none are
    sent: everything Pantau needs is in the value.
  * `acks="all"`: a line is reported `sent` only once every in-sync replica has it.
  * each line is checked against ReportEvent v1 first; a bad one is not sent and its bad
    fields are named (the raw-topic validator would only have put it on the DLQ).
  * `event_id` is the idempotency key: running the same file twice publishes every line again,
    and Pantau counts the second copies as duplicates.

The result lines are `line N: EVENT_ID sent (partition P, offset O)` or `line N: failed: WHY`;
the command exits 1 when any line failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import orjson

from shared.schemas import validate_obj
from shared.topics import REPORTS_RAW

SEND_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LineResult:
    """What became of one line of the input file: published, or why not."""

    line: int
    ok: bool
    text: str


def checked(n: int, raw: bytes) -> tuple[str, str] | LineResult:
    """(event_id, region_code) of a valid report line, or why the line cannot be sent."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return LineResult(n, False, f"not JSON ({e.args[0] if e.args else e})")
    report, errors = validate_obj(obj)
    if report is None:
        return LineResult(n, False, "; ".join(f"{e['field']}: {e['message']}" for e in errors))
    return report.event_id, report.region_code


def producer(bootstrap: str):
    """A durable kafka-python producer; raises kafka.errors.NoBrokersAvailable when none answers."""
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        client_id="pantau-send",
        acks="all",
        # Retries keep the order of one partition only with one request in flight.
        retries=5,
        max_in_flight_requests_per_connection=1,
        request_timeout_ms=int(SEND_TIMEOUT_S * 1000),
        max_block_ms=int(SEND_TIMEOUT_S * 1000),
    )


def publish(lines: Iterable[bytes], bootstrap: str, report: Callable[[LineResult], None]) -> int:
    """Send every line in order; `report` hears each line's result. Returns how many failed."""
    from kafka.errors import KafkaError

    failed = 0
    p = producer(bootstrap)
    try:
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            got = checked(n, raw)
            if isinstance(got, LineResult):
                result = got
            else:
                event_id, region = got
                try:
                    md = p.send(REPORTS_RAW, value=raw.strip(), key=region.encode()).get(timeout=SEND_TIMEOUT_S)
                    result = LineResult(n, True, f"{event_id} sent (partition {md.partition}, offset {md.offset})")
                except KafkaError as e:
                    result = LineResult(n, False, f"{event_id} not confirmed by the broker ({type(e).__name__}); "
                                                   f"sending it again is safe: Pantau drops a repeated event_id")
            failed += not result.ok
            report(result)
    finally:
        p.close(timeout=SEND_TIMEOUT_S)
    return failed


__all__ = ["LineResult", "checked", "publish"]
