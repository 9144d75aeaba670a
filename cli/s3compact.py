"""Compaction of the scoring worker's changelogs, done by the store when it starts, before the
broker does (`python -m cli.s3store --compact GLOB`).

A changelog holds every version of every cell (and each partition's progress), and Faust reads
it whole from its start at every start of the scoring worker to rebuild its tables. Tansu 0.6's
`s3://` engine never compacts (it ignores `cleanup.policy=compact`) and lists the whole partition
on each fetch, so a restart took longer with every batch ever written. Only the last version of
each key counts for the rebuilt table, so a record batch whose every key has a later version
further on in its partition changes nothing that recovery ends with, and is deleted.

Why this is safe here:
- It runs before the store serves anything: no fetch can be between a listing and a read of a
  batch being deleted, and the broker starts on what is left.
- Every record of a deleted batch has a later version in a batch that stays. A batch that
  cannot be read (or holds a record without a key) is kept, and its keys supersede nothing.
- The newest batch of each partition is kept and supersedes nothing: Tansu 0.6 answers a
  partition's end offset as that batch's base offset + 1, so a reader stops after its first
  record, and only its first record is sure to be read.
- Offsets never move: the high watermark is in `watermark.json`, untouched; readers skip the
  gaps, as after Kafka's own compaction.
- Deleting is one unlink per batch: a cut in the middle leaves a state that is just as valid.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiokafka.record.default_records import DefaultRecordBatch


def keys_of(path: Path) -> frozenset[bytes] | None:
    """The keys of a stored record batch, or None if it cannot be read or holds a record
    without a key (such a batch is never deleted)."""
    try:
        batch = DefaultRecordBatch(bytearray(path.read_bytes()))
        if not batch.validate_crc():
            return None
        keys = [r.key for r in batch]
    except Exception:  # noqa: BLE001 — anything unreadable is kept, whatever the reason
        return None
    if not keys or any(k is None for k in keys):
        return None
    return frozenset(bytes(k) for k in keys)


def compact_folder(folder: Path) -> int:
    """Delete the superseded record batches of one partition's records folder; how many."""
    names = sorted(n for n in os.listdir(folder) if n.endswith(".batch"))
    later: set[bytes] = set()  # keys with a version in a batch after the current one
    gone = 0
    for name in reversed(names[:-1]):  # newest first, the newest batch itself left out
        path = folder / name
        keys = keys_of(path)
        if keys is None:
            continue
        if keys <= later:
            path.unlink()
            gone += 1
        else:
            later |= keys
    return gone


def compact(root: Path, pattern: str) -> tuple[int, int]:
    """(batches deleted, partitions looked at) over the records folders matching `pattern`."""
    gone = folders = 0
    for folder in root.glob(pattern):
        gone += compact_folder(folder)
        folders += 1
    return gone, folders
