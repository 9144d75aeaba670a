"""`pantau backtest` as an analyst runs it: a CSV in, the scored CSV out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "backtest", *args], capture_output=True, text=True, timeout=60)


def test_backtest_prints_the_known_answer(tmp_path: Path) -> None:
    # surveillance's own test: last 7 weeks 1,1,1,3,3,1,2 → C1 (α 0.05) upper bound 3.278854.
    csv = tmp_path / "weeks.csv"
    csv.write_text("period,count\n" + "".join(f"w{i},{c}\n" for i, c in enumerate([1, 1, 1, 3, 3, 1, 2, 8], 1)))
    r = _run("--method", "ears-c1", "--alpha", "0.05", "--baseline", "7", str(csv))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "period,count,expected,upper,alarm"
    assert lines[1] == "w1,1,,,false"
    assert lines[-1] == "w8,8,1.714286,3.278854,true"


def test_backtest_names_the_bad_line(tmp_path: Path) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("period,count\nw1,1\nw2,many\n")
    r = _run("--method", "ears-c2", str(csv))
    assert r.returncode == 2
    assert "line 3" in r.stderr and r.stdout == ""
    assert "Traceback" not in r.stderr


def test_backtest_without_method_scores_with_the_live_default(tmp_path: Path) -> None:
    # 40 quiet days of one report every other day, then 6 reports: the GLR (the live default,
    # 28-day reference with a 2-day guard) alarms on the last day only.
    csv = tmp_path / "days.csv"
    days = [1 if i % 2 else 0 for i in range(40)] + [6]
    csv.write_text("period,count\n" + "".join(f"2026-10-{i + 1:02d},{c}\n" if i < 31 else f"{i},{c}\n"
                                              for i, c in enumerate(days)))
    r = _run(str(csv))
    assert r.returncode == 0, r.stderr
    rows = [line.split(",") for line in r.stdout.splitlines()[1:]]
    assert [row[4] for row in rows].count("true") == 1 and rows[-1][4] == "true"
    assert rows[29][2] == "" and rows[30][2] != ""   # first bound after 28 + 2 buckets
    assert rows[0][0] == "2026-10-01" and rows[-1][0] == "40"   # ISO dates and integers alike


def test_backtest_without_method_follows_the_config(tmp_path: Path) -> None:
    csv = tmp_path / "weeks.csv"
    csv.write_text("period,count\n" + "".join(f"w{i},{c}\n" for i, c in enumerate([1, 1, 1, 3, 3, 1, 2, 8], 1)))
    cfg = tmp_path / "pantau.yaml"
    cfg.write_text("scoring:\n  method: ears-c1\n  baseline: 7\n  alpha: 0.05\n  min_sigma: 0\n")
    r = _run("--config", str(cfg), str(csv))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "w8,8,1.714286,3.278854,true"


def test_backtest_options_without_method_are_refused(tmp_path: Path) -> None:
    csv = tmp_path / "days.csv"
    csv.write_text("period,count\nd1,1\n")
    r = _run("--alpha", "0.01", str(csv))
    assert r.returncode == 2 and "--method" in r.stderr and r.stdout == ""
