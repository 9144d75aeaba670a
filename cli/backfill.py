"""`pantau backfill FILE`: historical reports (JSON Lines or CSV) into the scoring baselines.

Each row is validated as ingest validates a report (shared/schemas.py, with the region
registry); a bad row is reported with its line and fields and never loaded. The valid reports
are aggregated into counts per cell and bucket (services/scoring/backfill.py) and sent, one
message per (kabupaten/kota, category), to `pantau.scoring.backfill`, in the partition of
`pantau.reports.v1` that carries the region, so the worker owning the cell applies it.

CSV: the header names ReportEvent fields; `location.lat`, `location.lon` and `attributes.<key>`
columns hold the nested fields; an empty cell leaves a field out; `verified` is `true` or
`false`; integer fields are written in decimal.
"""

from __future__ import annotations

import asyncio
import csv
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from services.scoring.backfill import Aggregate, Outside, messages, outside
from services.scoring.baseline import Scoring
from shared import topics
from shared.config import Config
from shared.schemas import ReportEvent, validate_obj

SHOWN_ERRORS = 20  # bad rows printed one by one; the rest are counted

_NESTED = ("location", "attributes")
COLUMNS = frozenset(f for f in ReportEvent.model_fields if f not in _NESTED) | {"location.lat", "location.lon"}
REQUIRED = tuple(name for name, f in ReportEvent.model_fields.items() if f.is_required())
_INTEGERS = frozenset({"severity", "casualties", "participants", "schema_version"})
_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class FileProblem(Exception):
    """The file as a whole cannot be read (its header, its encoding): nothing is loaded."""


@dataclass
class BadRow:
    """A row of the file left out, with every field at fault."""

    line: int
    errors: list[dict[str, str]]

    def __str__(self) -> str:
        return f"line {self.line}: " + "; ".join(f"{e['field']}: {e['message']}" for e in self.errors)


@dataclass
class Loaded:
    """What reading a file gave: the aggregate, and the rows that were not loaded."""

    agg: Aggregate = field(default_factory=Aggregate)
    rows: int = 0
    bad: list[BadRow] = field(default_factory=list)   # the first SHOWN_ERRORS
    bad_count: int = 0

    @property
    def valid(self) -> int:
        return self.rows - self.bad_count


def file_format(path: Path, head: bytes) -> str:
    """`jsonl` or `csv`, by the file's extension, else by its first character."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "csv"


def _jsonl_rows(lines: Iterator[bytes]) -> Iterator[tuple[int, Any, list[dict[str, str]]]]:
    for n, line in enumerate(lines, 1):
        if n == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")
        if not line.strip():
            continue
        try:
            yield n, orjson.loads(line), []
        except orjson.JSONDecodeError as e:
            yield n, None, [{"field": "(row)", "message": f"invalid JSON: {e.args[0] if e.args else e}"}]


def check_header(header: list[str]) -> None:
    """Raise FileProblem naming unknown, repeated or missing columns."""
    unknown = [c for c in header if c not in COLUMNS and not (c.startswith("attributes.") and len(c) > 11)]
    if unknown:
        raise FileProblem(f"line 1: unknown column(s) {', '.join(repr(c) for c in unknown)}; "
                          f"columns are ReportEvent fields, location.lat, location.lon and attributes.<key>")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise FileProblem(f"line 1: column(s) {', '.join(repeated)} appear more than once")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise FileProblem(f"line 1: missing required column(s) {', '.join(missing)}")


def from_csv(header: list[str], values: list[str]) -> dict[str, Any]:
    """One CSV row as the JSON object it stands for. Text that is not a valid number or
    boolean is passed on as text, so that the schema names the field and the problem."""
    obj: dict[str, Any] = {}
    for name, text in zip(header, values):
        if text == "":
            continue
        if name in _INTEGERS:
            obj[name] = int(text) if _INTEGER.match(text.strip()) else text
        elif name == "verified":
            obj[name] = {"true": True, "false": False}.get(text.strip().lower(), text)
        elif name.startswith("location."):
            obj.setdefault("location", {})[name[9:]] = float(text) if _NUMBER.match(text.strip()) else text
        elif name.startswith("attributes."):
            obj.setdefault("attributes", {})[name[11:]] = text
        else:
            obj[name] = text
    return obj


def _csv_rows(lines: Iterator[bytes]) -> Iterator[tuple[int, Any, list[dict[str, str]]]]:
    text = (raw.decode("utf-8", errors="replace") for raw in lines)
    reader = csv.reader(text)
    try:
        header = [c.strip() for c in next(reader)]
    except StopIteration:
        raise FileProblem("the file is empty; a CSV needs a header line of ReportEvent field names") from None
    header[0] = header[0].removeprefix("\ufeff")
    check_header(header)
    end = reader.line_num
    for values in reader:
        line, end = end + 1, reader.line_num
        if not any(values):
            continue
        if len(values) != len(header):
            yield line, None, [{"field": "(row)", "message": f"{len(values)} values for {len(header)} columns"}]
            continue
        if any("\ufffd" in v for v in values):
            yield line, None, [{"field": "(row)", "message": "not UTF-8 text"}]
            continue
        yield line, from_csv(header, values), []


def read(f: BinaryIO, fmt: str, sc: Scoring, on_progress: Callable[[int, int], None] = lambda b, r: None) -> Loaded:
    """Validate and aggregate every row of an open file; `on_progress(bytes read, rows read)`
    is called every few hundred rows."""
    consumed = 0

    def lines() -> Iterator[bytes]:
        nonlocal consumed
        for raw in f:
            consumed += len(raw)
            yield raw

    out = Loaded()
    rows = _jsonl_rows(lines()) if fmt == "jsonl" else _csv_rows(lines())
    for line, obj, errors in rows:
        out.rows += 1
        if not errors:
            report, errors = validate_obj(obj)
        if errors:
            out.bad_count += 1
            if len(out.bad) < SHOWN_ERRORS:
                out.bad.append(BadRow(line, errors))
        else:
            # The validated input itself: strict validation coerced nothing, so its values
            # are what the schema accepted (absent optional fields keep their defaults).
            out.agg.add(obj, sc)
        if out.rows % 500 == 0:
            on_progress(consumed, out.rows)
    on_progress(consumed, out.rows)
    return out


# --------------------------------------------------------------------------- delivery


class Unreachable(Exception):
    """The broker cannot be reached or refused the backfill topic."""


async def _ensure_topic(config: Config) -> None:
    """The backfill topic with kafka.partitions partitions: a worker that never ran yet has
    not declared it, and a topic of another size would send cells to the wrong worker."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=config.kafka.bootstrap_servers, client_id="pantau-backfill")
    await admin.start()
    try:
        if topics.SCORING_BACKFILL not in set(await admin.list_topics()):
            await admin.create_topics([NewTopic(topics.SCORING_BACKFILL, config.kafka.partitions,
                                                config.kafka.replication_factor)])
        described = await admin.describe_topics([topics.SCORING_BACKFILL])
        found = len(described[0].get("partitions", [])) if described else 0
    finally:
        await admin.close()
    if found != config.kafka.partitions:
        raise Unreachable(f"{topics.SCORING_BACKFILL} has {found} partitions, kafka.partitions is "
                          f"{config.kafka.partitions}; they must be equal")


async def deliver(config: Config, msgs: list[dict[str, Any]], on_sent: Callable[[int], None] = lambda n: None) -> None:
    """Send the messages with acks=all and wait until the broker has every one."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from services.scoring.agents import partition_of
    from shared.kafka import producer_settings

    try:
        await _ensure_topic(config)
        producer = AIOKafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, **producer_settings(30))
        await producer.start()
    except (KafkaError, OSError) as e:
        raise Unreachable(f"cannot reach the broker at {config.kafka.bootstrap_servers}: {e}") from None
    try:
        partitions = config.kafka.partitions
        futures = []
        for m in msgs:
            futures.append(await producer.send(
                topics.SCORING_BACKFILL, orjson.dumps(m), key=m["region"].encode(),
                partition=partition_of(m["region"], partitions)))
        for i, fut in enumerate(asyncio.as_completed(futures), 1):
            await fut
            on_sent(i)
    except KafkaError as e:
        raise Unreachable(f"the broker did not take the backfill: {e}") from None
    finally:
        await producer.stop()


@dataclass
class Plan:
    """What a backfill would write: the file read, the messages for the cells, and what falls outside."""

    loaded: Loaded
    msgs: list[dict[str, Any]]
    left_out: Outside
    now: float


async def end_offsets(config: Config) -> dict[int, int]:
    """The last offset of each partition of `pantau.scoring.backfill` that holds anything: what
    a worker's `~backfill|<p>` progress must reach for a backfill to be applied."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    c = AIOKafkaConsumer(bootstrap_servers=config.kafka.bootstrap_servers)
    await c.start()
    try:
        tps = [TopicPartition(topics.SCORING_BACKFILL, p) for p in range(config.kafka.partitions)]
        return {tp.partition: end - 1 for tp, end in (await c.end_offsets(tps)).items() if end > 0}
    finally:
        await c.stop()


def plan(loaded: Loaded, sc: Scoring, now: float | None = None) -> Plan:
    now = time.time() if now is None else now
    return Plan(loaded, messages(loaded.agg, sc, now), outside(loaded.agg, sc, now), now)
