"""The whole stack on the durable broker (Tansu `s3://` over cli/s3store.py) or on `memory://`,
with the webhook receiver, for the stages that compare the two; and what the durable broker
holds: record batches per topic, counted from the store's folder (one file per batch)."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from bench.pipeline import SERVICES, Receiver, pipeline_stack
from cli.stack import EmbeddedStack


@contextmanager
def full_stack(durable: bool, keep: bool, services: tuple[str, ...] = SERVICES
               ) -> Iterator[tuple[EmbeddedStack, Receiver]]:
    """bench.pipeline.pipeline_stack with the broker's mode chosen and a longer wait for
    scoring, whose changelog recovery is what bench.durable_restart measures."""
    with pipeline_stack(keep, services=services, prefix=f"pantau-bench-{'durable' if durable else 'memory'}-",
                        durable=durable, ready_s=120, scoring_ready_s=600) as got:
        yield got


def topics_dir(workdir: Path) -> Path:
    return workdir / "broker" / "tansu" / "clusters" / "tansu_cluster" / "topics"


def batches(workdir: Path) -> Counter[tuple[str, int]]:
    """Record batches the durable broker holds, per (topic, partition)."""
    out: Counter[tuple[str, int]] = Counter()
    root = topics_dir(workdir)
    if not root.is_dir():
        return out
    for records in root.glob("*/partitions/*/records"):
        topic, partition = records.parent.parent.parent.name, int(records.parent.name)
        out[(topic, partition)] = sum(1 for n in records.iterdir() if n.name.endswith(".batch"))
    return out


def by_topic(counts: Counter[tuple[str, int]]) -> Counter[str]:
    out: Counter[str] = Counter()
    for (topic, _), n in counts.items():
        out[topic] += n
    return out
