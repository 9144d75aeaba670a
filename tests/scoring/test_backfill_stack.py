"""`pantau backfill` against the embedded stack: a CSV and a JSON Lines file of history loaded
through the command into the scoring worker's cells, then judged by live reports."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Callable

import orjson

from cli.backfill import end_offsets
from cli.stack import EmbeddedStack
from tests.scoring.conftest import of, post, scores
from tests.scoring.test_service import days_ago, now_local
from tests.utils import collect, report

CHANGELOG = "pantau-scoring-baselines-changelog"
CAT = "land_resource_conflict"
BUSY = [9, 12, 10, 14, 8, 11, 13, 9, 12, 10, 11, 10, 12, 9]  # Bulungan, the 14 days before today
QUIET = [1] * 14                                             # Malinau


def history(region: str, daily: list[int]) -> list[dict]:
    n = len(daily)
    return [report(event_id=f"hist-{region}-{d}-{k}", region_code=f"{region}.01", category=CAT, verified=True,
                   severity=2, occurred_at=days_ago(n - d).replace("T12:00", f"T12:{k:02d}"))
            for d, count in enumerate(daily) for k in range(count)]


def write_csv(path: Path, reports: list[dict]) -> None:
    out = io.StringIO()
    w = csv.writer(out)
    cols = ["event_id", "source", "region_code", "category", "severity", "occurred_at", "title", "verified"]
    w.writerow(cols)
    for r in reports:
        w.writerow([str(r[c]).lower() if c == "verified" else r[c] for c in cols])
    w.writerow(["bad-1", "fkdm-kaltara", "65.01", CAT, "2", days_ago(3), "", "true"])  # empty title
    path.write_text(out.getvalue())


def write_jsonl(path: Path, reports: list[dict]) -> None:
    bad = dict(reports[0], event_id="bad-2", category="riot")
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in [*reports, bad]) + b"\n")


def backfill(stack: EmbeddedStack, *files: Path) -> list[subprocess.CompletedProcess]:
    return [subprocess.run([sys.executable, "-m", "cli.main", "backfill", "--config", str(stack.config_path), str(f)],
                           capture_output=True, text=True, timeout=120) for f in files]


def cells(stack: EmbeddedStack, done: Callable[[dict[bytes, dict]], bool], timeout_s: float = 60) -> dict[bytes, dict]:
    """The latest value of every key of the baselines changelog, read until `done` holds."""
    def latest(ms) -> dict[bytes, dict]:
        return {m.key: orjson.loads(m.value) for m in ms}

    got = asyncio.run(collect(stack.config.kafka.bootstrap_servers, [CHANGELOG], lambda ms: done(latest(ms)),
                              timeout_s))
    return latest(got)


def backfill_ends(stack: EmbeddedStack) -> dict[int, int]:
    """The last offset of each partition of the backfill topic that holds anything."""
    return asyncio.run(end_offsets(stack.config))


def test_a_backfilled_busy_history_absorbs_a_count_that_alarms_a_quiet_one(scoring_stack, gateway, tmp_path):
    busy_csv, quiet_jsonl = tmp_path / "bulungan.csv", tmp_path / "malinau.jsonl"
    write_csv(busy_csv, history("65.01", BUSY))
    write_jsonl(quiet_jsonl, history("65.02", QUIET))
    first = backfill(scoring_stack, busy_csv, quiet_jsonl)
    for done, name, bad in zip(first, ("bulungan.csv", "malinau.jsonl"), ("title", "category")):
        assert done.returncode == 1, done.stderr  # each file has one bad row: loaded all the same, but said
        assert "sent 1 cells" in done.stdout
        assert f"{name} line " in done.stderr and f": {bad}: " in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    busy_key, quiet_key = f"65.01|{CAT}".encode(), f"65.02|{CAT}".encode()

    def loaded(cs: dict[bytes, dict]) -> bool:
        return all(k in cs and cs[k]["backfilled"] >= 0 for k in (busy_key, quiet_key))

    cs = cells(scoring_stack, loaded)
    assert cs[busy_key]["history"][-len(BUSY):] == [float(n) for n in BUSY]
    assert cs[quiet_key]["history"][-len(QUIET):] == [1.0] * len(QUIET)

    # Six reports today in each, then a severity-5 report in Bulungan to make it speak.
    post(gateway, [report(region_code=r, category=CAT, verified=True, severity=2, occurred_at=now_local())
                   for r in ("65.01", "65.02") for _ in range(6)])
    post(gateway, [report(region_code="65.01", category=CAT, verified=True, severity=5, occurred_at=now_local())])
    updates = scores(scoring_stack, lambda us: bool(of(us, "65.01")) and bool(of(us, "65.02")), CAT)
    (quiet,) = of(updates, "65.02")
    assert (quiet["level"], quiet["alarm"], quiet["method"], quiet["observed"]) == ("siaga", True, "ears-c2", 6)
    assert "(EARS C2, baseline 7 hari)" in quiet["reasons"][0]
    (busy,) = of(updates, "65.01")
    assert (busy["level"], busy["alarm"], busy["method"], busy["observed"]) == ("awas", False, "ears-c2", 7)
    assert busy["reasons"][0] == "laporan tingkat keparahan 5"
    assert "(EARS C2, baseline 7 hari)" in busy["reasons"][1] and "riwayat belum cukup" not in busy["reasons"][1]

    # The same files again, after the live reports: nothing changes, no update is sent.
    before = cells(scoring_stack, lambda cs: cs.get(busy_key, {}).get("observed") == 7
                   and cs.get(quiet_key, {}).get("observed") == 6)
    again = backfill(scoring_stack, busy_csv, quiet_jsonl)
    assert [d.returncode for d in again] == [1, 1]
    ends = backfill_ends(scoring_stack)
    after = cells(scoring_stack, lambda cs: all(int(cs.get(f"~backfill|{p}".encode(), -1)) >= end
                                                for p, end in ends.items()))
    assert (after[busy_key], after[quiet_key]) == (before[busy_key], before[quiet_key])
    assert len(scores(scoring_stack, lambda us: len(us) >= 2, CAT)) == 2
