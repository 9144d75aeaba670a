"""`pantau up` with a config whose sections are each valid but point at something missing: it
says which key, exits 2, and starts nothing (no workdir, no broker, no crashed child)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_up_with_a_broken_reference_exits_naming_the_key_before_starting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
contacts:
  - {id: budi, name: Budi}
policies:
  - id: kaltara
    match: {region: "65"}
    steps: [{notify: ["contact:budi"], wait_minutes: 5}]
  - id: kaltara-siaga
    match: {region: "65", min_level: siaga}
    steps:
      - {notify: ["contact:budi"], wait_minutes: 5}
      - {notify: ["oncall:province", "contact:x"], wait_minutes: 5}
rotations:
  - {region: "65.71", members: [budi, andi], start: 2024-11-04}
""")
    workdir = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")}
    p = subprocess.run([sys.executable, "-m", "cli.main", "up", "--config", str(bad), "--workdir", str(workdir)],
                       capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "policies[1].steps[1].notify[1]: unknown contact 'x'" in p.stderr
    assert "rotations[0].members[1]: unknown contact 'andi'" in p.stderr
    assert str(bad) in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert "starting" not in p.stdout and not workdir.exists(), "something started before the config was checked"


BROKEN = """
contacts:
  - {id: budi, name: Budi}
policies:
  - id: p
    steps: [{notify: ["contact:budi", "contact:x"]}]
"""


@pytest.mark.parametrize("service", [["services.ingest", "gateway"], ["services.ingest", "validator"],
                                     ["services.scoring"], ["services.notify"]])
def test_every_service_refuses_a_broken_reference_naming_the_key(tmp_path: Path, service: list[str]) -> None:
    # Even a service that never reads the policies: one file, checked whole, wherever it is read.
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PANTAU_")} | {"PANTAU_CONFIG": str(bad)}
    p = subprocess.run([sys.executable, "-m", *service], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "policies[0].steps[0].notify[1]: unknown contact 'x'" in p.stderr
    assert "Traceback" not in p.stderr
