"""`pantau backfill --dry-run` as an operator runs it: files read, every bad row named by its
line and field, nothing loaded from a bad row, never a traceback."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from cli.backfill import from_csv, read
from services.scoring.baseline import Scoring
from shared.scoring_config import ScoringSettings

WITA = timezone(timedelta(hours=8))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "backfill", "--dry-run", *args],
                          capture_output=True, text=True, timeout=60)


def days_ago(n: int) -> str:
    return (datetime.now(WITA) - timedelta(days=n)).replace(microsecond=0).isoformat()


def row(i: int, **overrides) -> dict:
    body = {"event_id": f"h-{i}", "source": "fkdm-kaltara", "region_code": "65.01.01", "category": "communal_clash",
            "severity": 2, "occurred_at": days_ago(1 + i % 5), "title": "Bentrok warga"}
    body.update(overrides)
    return body


def test_jsonl_bad_rows_are_named_by_line_and_field(tmp_path: Path) -> None:
    lines = [orjson.dumps(row(1)), orjson.dumps(row(2, severity=7)), b"", b"{not json",
             orjson.dumps(row(3, region_code="99.99", colour="red")), orjson.dumps(row(1))]
    f = tmp_path / "history.jsonl"
    f.write_bytes(b"\n".join(lines) + b"\n")
    r = _run(str(f))
    assert r.returncode == 1, r.stderr
    assert "history.jsonl line 2: severity: Input should be less than or equal to 5" in r.stderr
    assert "history.jsonl line 4: (row): invalid JSON" in r.stderr
    assert "history.jsonl line 5: region_code: unknown region code '99.99'; colour: unknown field" in r.stderr
    assert "5 rows: 2 valid (1 repeating an earlier source and event_id, counted once), 3 bad" in r.stdout
    assert "dry run: 1 cells" in r.stdout
    assert "Traceback" not in r.stderr


def test_csv_with_nested_columns_and_bad_values(tmp_path: Path) -> None:
    f = tmp_path / "history.csv"
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["event_id", "source", "region_code", "category", "severity", "occurred_at", "title", "verified",
                "casualties", "location.lat", "location.lon", "attributes.kecamatan"])
    w.writerow(["c1", "fkdm-kaltara", "65.71.02", "other", "3", days_ago(2), "Rapat, lalu ricuh", "true", "",
                "3.3", "117.6", "Tarakan Tengah"])
    w.writerow(["c2", "fkdm-kaltara", "65.71", "other", "three", days_ago(2), "x", "yes", "-1", "", "", ""])
    w.writerow(["c3", "fkdm-kaltara", "65.71", "other", "2", days_ago(2), "x", "", "", "91", "117", ""])
    f.write_text(out.getvalue())
    r = _run(str(f))
    assert r.returncode == 1, r.stderr
    assert ("history.csv line 3: severity: Input should be a valid integer; verified: Input should be a valid "
            "boolean; casualties: Input should be greater than or equal to 0") in r.stderr
    assert "history.csv line 4: location.lat: Input should be less than or equal to 6.5" in r.stderr
    assert "3 rows: 1 valid" in r.stdout


def test_csv_values_become_the_json_they_stand_for() -> None:
    header = ["event_id", "severity", "verified", "location.lat", "location.lon", "attributes.k", "description"]
    assert from_csv(header, ["e", "4", "FALSE", "-2.5", "120", "v", ""]) == {
        "event_id": "e", "severity": 4, "verified": False, "location": {"lat": -2.5, "lon": 120.0},
        "attributes": {"k": "v"}}


def test_a_bad_header_stops_before_anything_is_read(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_text("event_id,source,region,category,severity,occurred_at,title\n")
    r = _run(str(f))
    assert r.returncode == 2
    assert "line 1: unknown column(s) 'region'" in r.stderr
    f.write_text("event_id,source,region_code,category,occurred_at,title\n")
    assert "missing required column(s) severity" in _run(str(f)).stderr


def test_only_the_first_bad_rows_are_printed_then_a_count(tmp_path: Path) -> None:
    f = tmp_path / "many.jsonl"
    f.write_bytes(b"\n".join(orjson.dumps(row(i, severity=0)) for i in range(50)) + b"\n")
    r = _run(str(f))
    assert r.stderr.count("severity: Input should be greater than or equal to 1") == 20
    assert "... and 30 more bad rows" in r.stderr


def test_reading_reports_progress_in_bytes_and_rows(tmp_path: Path) -> None:
    body = b"\n".join(orjson.dumps(row(i)) for i in range(1200)) + b"\n"
    seen: list[tuple[int, int]] = []
    with io.BytesIO(body) as f:
        loaded = read(f, "jsonl", Scoring.from_settings(ScoringSettings()), lambda b, r: seen.append((b, r)))
    assert loaded.valid == 1200
    assert seen[-1] == (len(body), 1200) and [r for _, r in seen] == [500, 1000, 1200]
