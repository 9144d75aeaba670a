"""`pantau send FILE --kafka BOOTSTRAP`, the reference Kafka publisher, run as a user runs it
against the embedded broker with the ingest validator behind it: every line is on
`pantau.reports.raw` keyed by its region_code, and Pantau accepts each exactly once onto
`pantau.reports.v1`; a bad line is named and not sent, the others still are, and the exit code
says something failed; an unreachable broker is one line and exit 1."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

from cli.stack import EmbeddedStack, free_port
from shared import topics
from tests.utils import collect, report, value

PANTAU = [sys.executable, "-m", "cli.main"]
ROOT = Path(__file__).resolve().parents[2]


def send(path: Path, bootstrap: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PANTAU, "send", str(path), "--kafka", bootstrap], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_every_line_reaches_pantau_once_keyed_by_region(stack: EmbeddedStack, tmp_path: Path):
    bootstrap = stack.config.kafka.bootstrap_servers
    reports = [report(region_code=code, source="fkdm-kaltara") for code in ("65.01", "65.71.02", "65.03", "65.01")]
    f = tmp_path / "reports.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in reports) + "\n\n")  # a blank line is skipped

    r = send(f, bootstrap)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert [re.match(r"line (\d+): (\S+) sent \(partition \d+, offset \d+\)$", l).groups() for l in lines] == \
           [(str(n), rep["event_id"]) for n, rep in enumerate(reports, 1)]

    ids = {rep["event_id"]: rep for rep in reports}
    raw = asyncio.run(collect(bootstrap, [topics.REPORTS_RAW], lambda got: len(got) == len(ids),
                              where=lambda m: value(m).get("event_id") in ids))
    assert {value(m)["event_id"]: m.key.decode() for m in raw} == {i: rep["region_code"] for i, rep in ids.items()}
    assert all(value(m) == ids[value(m)["event_id"]] for m in raw)  # the line as written

    accepted = asyncio.run(collect(bootstrap, [topics.REPORTS_V1], lambda got: len(got) == len(ids),
                                   where=lambda m: value(m).get("event_id") in ids))
    assert sorted(value(m)["event_id"] for m in accepted) == sorted(ids)
    assert all(value(m)["ingest_id"].startswith("raw-") for m in accepted)


def test_a_bad_line_is_named_not_sent_and_the_exit_code_says_so(stack: EmbeddedStack, tmp_path: Path):
    good = report(region_code="65.02")
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join([json.dumps(report(severity=9, title="")), "{not json", json.dumps(good)]) + "\n")

    r = send(f, stack.config.kafka.bootstrap_servers)
    assert r.returncode == 1
    out = r.stdout
    assert re.search(r"line 1: failed: .*severity: Input should be less than or equal to 5", out)
    assert re.search(r"line 1: failed: .*title:", out)
    assert "line 2: failed: not JSON" in out
    assert re.search(rf"line 3: {good['event_id']} sent", out)
    assert "Traceback" not in out + r.stderr


def test_an_unreachable_broker_is_one_line_and_exit_1(tmp_path: Path):
    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps(report()) + "\n")
    r = send(f, f"127.0.0.1:{free_port()}")
    assert r.returncode == 1
    assert "cannot reach the broker" in r.stderr and "Traceback" not in r.stderr
