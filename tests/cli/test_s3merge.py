"""The store's merging of old record batches (cli/s3merge.py), on a records folder as Tansu
writes it: every record keeps its offset, timestamp, key, value and headers; only plain,
consecutive, old enough batches are merged; the newest batch stays; a merge cut short is
finished by the next pass."""

from __future__ import annotations

import os
import time
from pathlib import Path

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from cli.s3merge import MAX_MERGED_BYTES, merge_folder, merged, parse, runs

DAY_NS = 86_400 * 10**9


def one(offset: int, value: bytes, ts: int, transactional: bool = False, producer_id: int = -1,
        headers: list | None = None) -> bytes:
    """A one-record batch as a producer sends it (header base offset 0) and Tansu stores it."""
    b = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=int(transactional),
                                  producer_id=producer_id, producer_epoch=0 if producer_id >= 0 else -1,
                                  base_sequence=offset if producer_id >= 0 else -1, batch_size=1 << 20)
    b.append(0, timestamp=ts, key=b"k%d" % (offset % 3), value=value, headers=headers or [])
    return bytes(b.build())


def write(folder: Path, offset: int, data: bytes, mtime_ns: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{offset:020d}.batch"
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def records(folder: Path) -> list[tuple[int, int, bytes | None, bytes | None, list]]:
    """(offset, timestamp, key, value, headers) of every record, offsets as Tansu serves them
    (base offset from the name), each offset once as a reader skips what it has read."""
    out: dict[int, tuple] = {}
    for path in sorted(folder.glob("*.batch")):
        base = int(path.name.removesuffix(".batch"))
        b = DefaultRecordBatch(bytearray(path.read_bytes()))
        assert b.validate_crc()
        for r in b:
            off = base + r.offset - b.base_offset
            out.setdefault(off, (off, r.timestamp, r.key, r.value, [tuple(h) for h in r.headers]))
    return [out[k] for k in sorted(out)]


def filled(folder: Path, n: int, old_ns: int) -> list[tuple]:
    for i in range(n):
        write(folder, i, one(i, b"v%d" % i, 1_700_000_000_000 + i, headers=[("h", b"%d" % i)]), old_ns + i * 1_000_000)
    return records(folder)


def test_old_batches_merge_into_one_keeping_every_record_and_the_newest_batch(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    old = time.time_ns() - DAY_NS
    before = filled(folder, 50, old)
    gone = merge_folder(folder, older_than_s=60)
    assert len(gone) == 48
    assert sorted(p.name for p in folder.iterdir()) == [f"{0:020d}.batch", f"{49:020d}.batch"]
    assert records(folder) == before
    head = parse(folder, f"{0:020d}.batch")
    assert (head.base, head.last, head.plain) == (0, 48, True)
    # The merged object's time is its newest source's: older than the partition's last batch,
    # which Tansu takes for the end.
    assert (folder / f"{0:020d}.batch").stat().st_mtime_ns == old + 48 * 1_000_000
    assert merge_folder(folder, older_than_s=60) == []  # nothing more to do


def test_young_transactional_and_non_consecutive_batches_are_left(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    old, now = time.time_ns() - DAY_NS, time.time_ns()
    for i in range(4):
        write(folder, i, one(i, b"a", 1), old + i)
    write(folder, 4, one(4, b"t", 1, transactional=True, producer_id=7), old + 4)
    for i in (5, 6, 9, 10):  # 7 and 8 are gone (expired or compacted): a gap
        write(folder, i, one(i, b"b", 1), old + i)
    for i in (11, 12, 13):
        write(folder, i, one(i, b"c", 1), now)
    before = records(folder)
    merge_folder(folder, older_than_s=60)
    assert sorted(int(p.name[:20]) for p in folder.glob("*.batch")) == [0, 4, 5, 9, 11, 12, 13]
    assert records(folder) == before


def test_idempotent_producer_batches_merge_without_their_producer(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    old = time.time_ns() - DAY_NS
    for i in range(3):
        write(folder, i, one(i, b"p", 1, producer_id=42), old + i)
    merge_folder(folder, older_than_s=60)
    b = DefaultRecordBatch(bytearray((folder / f"{0:020d}.batch").read_bytes()))
    assert (b.producer_id, b.last_offset_delta, b.is_transactional) == (-1, 1, False)


def test_a_merge_cut_short_is_finished_by_the_next_pass(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    before = filled(folder, 10, time.time_ns() - DAY_NS)
    batches = [parse(folder, p.name) for p in sorted(folder.glob("*.batch"))][:-1]
    (run,), _ = runs(batches)
    # The merged object written over the first source, the power cut before the others went.
    first = folder / f"{0:020d}.batch"
    data = merged(folder, run)
    first.write_bytes(data)
    os.utime(first, ns=(time.time_ns() - DAY_NS,) * 2)
    assert records(folder) == before  # the records twice: a reader skips what it has read
    gone = merge_folder(folder, older_than_s=60)
    assert len(gone) == 8
    assert records(folder) == before


def test_runs_stop_at_the_size_limit(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    big = b"x" * (MAX_MERGED_BYTES // 3)
    old = time.time_ns() - DAY_NS
    for i in range(8):
        write(folder, i, one(i, big, 1), old + i)
    before = records(folder)
    merge_folder(folder, older_than_s=60)
    assert all(p.stat().st_size <= MAX_MERGED_BYTES for p in folder.glob("*.batch"))
    # Two sources fit under the limit, three do not: 0-1, 2-3 and 4-5 merged, 6 alone, 7 the newest.
    assert sorted(int(p.name[:20]) for p in folder.glob("*.batch")) == [0, 2, 4, 6, 7]
    assert records(folder) == before


def test_a_young_batch_among_old_ones_splits_the_runs(tmp_path: Path) -> None:
    folder = tmp_path / "records"
    old, now = time.time_ns() - DAY_NS, time.time_ns()
    for i in range(10):
        write(folder, i, one(i, b"v", 1), now if i == 3 else old + i)
    write(folder, 10, one(10, b"v", 1), now)
    before = records(folder)
    merge_folder(folder, older_than_s=60)
    assert sorted(int(p.name[:20]) for p in folder.glob("*.batch")) == [0, 3, 4, 10]
    assert records(folder) == before
    assert (folder / f"{0:020d}.batch").stat().st_mtime_ns == old + 2
    assert (folder / f"{4:020d}.batch").stat().st_mtime_ns == old + 9
