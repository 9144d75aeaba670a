"""Restart after a simulated day, week or month of reports: the scoring worker resumes at the end
of pantau.reports.v1 partitions that long, with the store merging old batches and without
(`python -m bench.restart_reports --levels 2500,17500,75000`).

A steady day is 10,000 reports a few a minute, one record batch each on reports.v1's 4
partitions: 2,500 batches per partition a day, 17,500 a week, 75,000 a month. The scoring
worker first scores 40 reports and commits; with the stack stopped, each partition is filled
with that many one-record batches a day old (bench.durable_restart.fill_partition) and the
group's committed offsets moved to the new end, as if it had read them all; then the stack
starts as `pantau up` does ("after": the store merges before it serves; "before": it does
not), and 20 new reports are produced one at a time: the time until scoring has counted them.
After merging, the stack is stopped and started once more, as at any later restart."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cli.stack
from bench.durable_restart import VALUE, fill_partition, wait_ready
from bench.durable_stack import full_stack, topics_dir
from bench.scoring import _produce, _scored, messages
from bench.stack import PARTITIONS, scrape
from shared import topics

TOPIC = topics.REPORTS_V1
WARM, NEW = 40, 20
DAY_S = 86400.0
SCORE_WITHIN_S = 180.0


@dataclass
class Outcome:
    per_partition: int
    merged: bool
    objects: int  # objects in partition 0 after the store started
    ready_s: float  # store, broker, Redis and scoring started → scoring's /readyz 200
    scored_s: float | None  # first of the new reports produced → all of them counted; None: not within
    again: tuple[float, float | None] | None = None  # (ready_s, scored_s) at a second restart, merged


def scored(port: int) -> float:
    return _scored(scrape(port))


def wait_scored(port: int, n: float, timeout_s: float) -> bool:
    t0 = time.monotonic()
    while scored(port) < n:
        if time.monotonic() - t0 > timeout_s:
            return False
        time.sleep(0.2)
    return True


def offsets_files(workdir: Path) -> list[Path]:
    groups = topics_dir(workdir).parent / "groups" / "consumers"
    return sorted(groups.glob(f"*/offsets/{TOPIC}/partitions/*.json"))


def high(workdir: Path, part: int) -> int:
    mark = topics_dir(workdir) / TOPIC / "partitions" / f"{part:010d}" / "watermark.json"
    return (json.loads(mark.read_text())["high"] or 0) if mark.exists() else 0


def committed_to_the_end(workdir: Path, timeout_s: float = 60.0) -> None:
    """Wait until the scoring group has committed every partition to its end."""
    t0 = time.monotonic()
    while True:
        files = offsets_files(workdir)
        done = {int(f.stem): json.loads(f.read_text()).get("offset") for f in files}
        if len(done) == PARTITIONS and all(done[p] == high(workdir, p) for p in done):
            return
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"scoring did not commit reports.v1 to its end: {done}")
        time.sleep(0.5)


def fill(workdir: Path, per_partition: int) -> None:
    for part in range(PARTITIONS):
        folder = topics_dir(workdir) / TOPIC / "partitions" / f"{part:010d}"
        have = sum(1 for _ in (folder / "records").glob("*.batch"))
        fill_partition(folder, have + per_partition, lambda i: b"65.01", VALUE, ago_s=DAY_S)
    for f in offsets_files(workdir):  # read them all before the stop
        commit = json.loads(f.read_text())
        commit["offset"] = high(workdir, int(f.stem))
        f.write_text(json.dumps(commit))


def once(per_partition: int, merging: bool, keep: bool) -> Outcome:
    with full_stack(durable=True, keep=keep, services=("scoring",)) as (stack, _):
        port, bootstrap = stack.config.scoring.web_port, stack.config.kafka.bootstrap_servers
        _produce(bootstrap, TOPIC, messages("warm", WARM))
        if not wait_scored(port, WARM, 120):
            raise RuntimeError("scoring did not count the warm-up reports")
        committed_to_the_end(stack.workdir)
        stack.stop()
        fill(stack.workdir, per_partition)
        ready, took = restart(stack, merging, "after")
        objects = sum(1 for _ in (topics_dir(stack.workdir) / TOPIC / "partitions" / f"{0:010d}" / "records").glob("*.batch"))
        out = Outcome(per_partition, merging, objects, ready, took)
        if merging:  # a later Ctrl-C and start: what was merged stays merged
            stack.stop()
            out.again = restart(stack, True, "again")
        return out


def restart(stack, merging: bool, tag: str) -> tuple[float, float | None]:
    """(store, broker, Redis and scoring started → ready, NEW reports produced one at a time →
    all counted, None if not within SCORE_WITHIN_S)."""
    port, bootstrap = stack.config.scoring.web_port, stack.config.kafka.bootstrap_servers
    t0 = time.monotonic()
    merged, cli.stack.MERGED_TOPICS = cli.stack.MERGED_TOPICS, cli.stack.MERGED_TOPICS if merging else ()
    try:
        stack.start_store()
    finally:
        cli.stack.MERGED_TOPICS = merged
    stack.start_broker()
    stack.start_redis()
    stack.start_service("scoring", wait=False)
    ready = wait_ready(stack, t0, 3600)
    base = scored(port)
    t1 = time.monotonic()
    for key, value in messages(tag, NEW):
        _produce(bootstrap, TOPIC, [(key, value)])
    ok = wait_scored(port, base + NEW, SCORE_WITHIN_S)
    return ready, (time.monotonic() - t1 if ok else None)


def line(o: Outcome) -> str:
    def got(s: float | None) -> str:
        return f"{s:.1f} s" if s is not None else f"not within {SCORE_WITHIN_S:.0f} s"

    again = (f"; restarted again: ready in {o.again[0]:.1f} s, {NEW} more scored in {got(o.again[1])}"
             if o.again else "")
    return (f"reports.v1 {o.per_partition:,} batches per partition, {'after (merged)' if o.merged else 'before'}: "
            f"{o.objects:,} objects in partition 0, scoring ready in {o.ready_s:.1f} s, {NEW} new reports produced one "
            f"at a time all scored in {got(o.scored_s)}{again}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.restart_reports", description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="2500,17500,75000", help="batches per reports.v1 partition, comma-separated")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--after-only", action="store_true", help="only with the store merging")
    args = ap.parse_args(argv)
    for level in (int(x) for x in args.levels.split(",")):
        for merging in ((True,) if args.after_only else (False, True)):
            print(line(once(level, merging, args.keep)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
