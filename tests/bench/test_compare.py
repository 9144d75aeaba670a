"""`python -m bench --compare REF` reads REF's results table, whatever bench version wrote it,
and says per row how this commit compares; `make test-faults` puts its tables in the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import compare, readme_faults
from bench.report import Row

ROOT = Path(__file__).resolve().parents[2]

# A results table as the bench of 2026-11-29 (6a03c94) wrote it, before ratio targets existed.
OLD = """| stage | pantau | baseline | ratio | pantau p50 / p99 | baseline p50 / p99 | CPU per report, pantau / baseline | target | met |
|---|---:|---:|---:|---:|---:|---:|---:|:-:|
| ingest single (POST /v1/reports) | 1,946 req/s | 11,255 req/s | 0.17 | 32.4 / 46.2 ms | 5.4 / 10.8 ms | 511 / 89 µs | ≥ 2,000 req/s | no |
| pipeline: POST → webhook `triggered` p99, 200 reports/s, each pages | 90.8 ms | 60.8 ms | 1.49 | 55.3 / 90.8 ms | 34.4 / 60.8 ms | 4,715 / 1,400 µs | < 250 ms | yes |
| scoring, 2 workers vs raw aiokafka consumer | 10,763 reports/s | 244,226 reports/s | 0.04 | — | — | 125 / 3 µs | — | — |
"""


def test_an_older_results_table_is_read_row_by_row() -> None:
    rows = compare.parse_table(OLD)
    assert [(r.stage, r.value, r.unit, r.ratio) for r in rows] == [
        ("ingest single (POST /v1/reports)", 1946.0, "req/s", 0.17),
        ("pipeline: POST → webhook `triggered` p99, 200 reports/s, each pages", 90.8, "ms", 1.49),
        ("scoring, 2 workers vs raw aiokafka consumer", 10763.0, "reports/s", 0.04),
    ]


def test_the_comparison_says_which_way_each_row_moved() -> None:
    mine = [Row("ingest single (POST /v1/reports)", "req/s", 3892.0, 11000.0, None),
            Row("pipeline: POST → webhook `triggered` p99, 200 reports/s, each pages", "ms", 181.6, 60.0, None),
            Row("a row REF does not have", "req/s", 10.0, 20.0, None)]
    lines = compare.table(mine, compare.parse_table(OLD), "6a03c94").splitlines()
    assert lines[2].startswith("| ingest single") and "| 2.00 | yes |" in lines[2]  # twice the rate: better
    assert "| 2.00 | no |" in lines[3]  # twice the latency: worse
    assert "| a row REF does not have | 10.0 req/s | — |" in lines[4]
    assert lines[5].startswith("| scoring, 2 workers") and "| — | 10,763 reports/s |" in lines[5]


def test_a_ratio_target_is_judged_on_the_ratio_and_named_when_missed() -> None:
    row = Row("pipeline", "ms", 400.0, 100.0, 250.0, lower_is_better=True, ratio_target=3.0,
              cpu_us=300.0, base_cpu_us=100.0, cpu_ratio_target=1.5)
    assert row.checks() == [("absolute", False), ("ratio", False), ("CPU", False)]
    assert Row("batch", "reports/s", 60.0, 100.0, None, ratio_target=0.5).met is True


def test_an_unknown_ref_is_refused_by_name() -> None:
    out = subprocess.run([sys.executable, "-m", "bench", "--compare", "no-such-ref-18"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "'no-such-ref-18' is not a commit" in out.stderr


def test_the_fault_table_goes_between_its_markers_with_its_commit(tmp_path: Path) -> None:
    results = ("# Fault suite (make test-faults)\n\nFault suite, 2026-12-02 12:00 UTC, commit abc1234, 2 cores.\n\n"
               "| phase | lost |\n|---|---:|\n| steady | 0 |\n\nLost = ...\n")
    readme = "before\n<!-- faults: written by make test-faults -->\nold table\n<!-- /faults -->\nafter\n"
    out = readme_faults.rewrite(readme, "faults", readme_faults.block("faults", results, "def5678"))
    assert out == ("before\n<!-- faults: written by make test-faults -->\n"
                   "Latest run (2026-12-02 12:00 UTC, commit abc1234, 2 cores; `bench/results/faults.md`):\n\n"
                   "| phase | lost |\n|---|---:|\n| steady | 0 |\n<!-- /faults -->\nafter\n")
    power = "# Power cut\n\n2026-12-02 10:59 UTC, 50 reports/s offered.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert "10:59 UTC, 50 reports/s offered; commit def5678;" in readme_faults.block("power-cut", power, "def5678")
