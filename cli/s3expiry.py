"""Retention for the durable broker, done by its store: old record batches of the topics whose
history nobody reads are deleted (`python -m cli.s3store --expire GLOB=SECONDS`).

Tansu 0.6's `s3://` engine never deletes a record batch: it ignores `retention.ms` and
`cleanup.policy`, its DeleteRecords is unimplemented (the handler panics), and its only
maintenance task is for the data lake. It lists every batch of a partition whenever a
consumer fetches new records from it, so a topic written every few seconds (the scoring ticks:
one empty record per partition every `scoring.tick_interval_s`) made every fetch slower, without
end. What makes deleting the oldest batches safe with Tansu 0.6: a fetch lists the batches that
are there and serves those at or after the asked offset (a gap is skipped, as after Kafka's
compaction); the high watermark is kept apart (`watermark.json`), so offsets never move back;
and the newest batch of each partition is always kept, since the earliest and latest offsets it
answers are taken from the batches that remain.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def parse_rule(text: str, option: str = "--expire") -> tuple[str, float]:
    """`GLOB=SECONDS`: a glob of records folders under the store's root, and the age (file
    time) after which their batches go (or are merged)."""
    pattern, sep, age = text.rpartition("=")
    try:
        seconds = float(age)
    except ValueError:
        seconds = -1.0
    if not sep or not pattern or seconds <= 0:
        raise ValueError(f"{option} {text!r}: expected GLOB=SECONDS, e.g. "
                         f"'tansu/clusters/*/topics/pantau.scoring.ticks/partitions/*/records=3600'")
    return pattern, seconds


def expired(root: Path, pattern: str, max_age_s: float, now: float | None = None) -> list[Path]:
    """Delete the record batches older than `max_age_s` in the folders matching `pattern`, all
    but the newest of each folder; the paths deleted."""
    cutoff = (time.time() if now is None else now) - max_age_s
    gone = []
    for folder in root.glob(pattern):
        names = sorted(n for n in os.listdir(folder) if n.endswith(".batch"))
        for name in names[:-1]:  # offsets are zero-padded: the last name is the newest batch
            path = folder / name
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    gone.append(path)
            except FileNotFoundError:
                continue
    return gone
