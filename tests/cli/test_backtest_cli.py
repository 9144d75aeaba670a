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
