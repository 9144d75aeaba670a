"""High watermarks set back to the records actually stored, done by the durable broker's store
as it starts, before the broker (`python -m cli.s3store --watermarks GLOB`).

Tansu's `s3://` engine gives a produce its offsets by raising the partition's high watermark
(`watermark.json`, a conditional PUT) and only then writes the record batch. A power cut
between the two leaves the watermark ahead of the last stored batch: the next produce after the
restart is given offsets past a hole that no batch will ever fill. Pantau's scoring worker
applies each partition in strict offset order (services/scoring/agents.py), so it waited for
the missing offset and asked for it again every few seconds, for good: the power-cut suite
saw a witness report never scored once in about six runs (offset 252 of reports.v1 missing,
253 onwards present).

Why setting the watermark back is safe: the records of the hole were never stored, so they
were never acknowledged to their producer (who sent them again) nor read by anyone; Tansu
answers a partition's end offset from its newest stored batch, never from the watermark, so no
reader was ever told of them. Every other maintenance pass keeps a partition's newest batch
(cli/s3expiry.py, s3compact.py, s3merge.py), so a stored batch is always there to say where the
partition really ends; a partition with none has never stored a record.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cli.s3files import fsync_dir, synced_temp
from cli.s3merge import parse

WATERMARK = "watermark.json"


def stored_end(records: Path) -> int | None:
    """One past the last offset held by a stored batch of a records folder (0 when it holds
    none), or None when a batch cannot be read: then nothing is changed."""
    try:
        names = [n for n in os.listdir(records) if n.endswith(".batch")]
    except FileNotFoundError:
        names = []
    end = 0
    for name in names:
        b = parse(records, name)
        if b is None:
            if (records / name).exists():
                return None
            continue  # gone since the listing; nothing else runs yet, so not expected
        end = max(end, b.last + 1)
    return end


def settle_partition(partition: Path) -> tuple[int, int] | None:
    """Set the partition's high watermark back to its stored end if a cut left it ahead;
    (the watermark before, after), or None if it was right (or cannot be read)."""
    path = partition / WATERMARK
    try:
        doc = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    high = doc.get("high") if isinstance(doc, dict) else None
    end = stored_end(partition / "records")
    if not isinstance(high, int) or end is None or high <= end:
        return None
    doc["high"] = end
    with synced_temp(partition, json.dumps(doc, separators=(",", ":")).encode()) as tmp:
        os.replace(tmp, path)
    fsync_dir(partition)
    return high, end


def settle(root: Path, pattern: str) -> dict[Path, tuple[int, int]]:
    """Every partition folder matching `pattern` whose watermark was set back, with (before, after)."""
    moved = {}
    for partition in sorted(root.glob(pattern)):
        change = settle_partition(partition)
        if change is not None:
            moved[partition] = change
    return moved
