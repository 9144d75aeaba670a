"""`python -m bench --compare REF`: the same stages on another commit, in the same invocation,
so that a change's effect reads as a ratio to the code before it rather than to a run on
another day.

REF's tree is exported (`git archive`, so the repository's worktree list is left alone) into
a temporary folder; each stage runs here, then at once on REF (`python -m bench --stage NAME`
in that folder, with this environment's interpreter and REF's code first on PYTHONPATH, so
the services it starts are REF's too). REF's results are read from the table it writes, which
every version of the bench has written in the same first columns (stage, pantau), so REF can
be older than this module. Rows are matched by stage name.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from bench.report import Row

# Units where less is better (latency, memory); elsewhere (rates) more is better.
LOWER_IS_BETTER = ("ms", "MB")


@dataclass(frozen=True)
class RefRow:
    stage: str
    value: float
    unit: str
    ratio: float | None  # to its own baseline, in REF's run
    cpu: str = "—"  # CPU per report as REF's table gives it ("48 / 16 µs (3.0×)")


def resolve(repo: Path, ref: str) -> str:
    """The full commit id of `ref`; ValueError naming it if git does not know it."""
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=repo,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise ValueError(f"--compare: {ref!r} is not a commit of {repo}")
    return out.stdout.strip()


@contextmanager
def checkout(repo: Path, commit: str) -> Iterator[Path]:
    """REF's tree in a temporary folder, removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=f"pantau-bench-ref-{commit[:8]}-"))
    try:
        archive = tmp / "tree.tar"
        with archive.open("wb") as f:
            subprocess.run(["git", "archive", "--format=tar", commit], cwd=repo, stdout=f, check=True)
        tree = tmp / "tree"
        tree.mkdir()
        with tarfile.open(archive) as t:
            t.extractall(tree, filter="data")
        archive.unlink()
        yield tree
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_stage(tree: Path, stage: str, quick: bool, log) -> list[RefRow]:  # type: ignore[no-untyped-def]
    """Run one stage of REF's bench; its rows ([] if REF has no such stage or it failed)."""
    out = tree / f"ref-{stage}.md"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [sys.executable, "-m", "bench", "--stage", stage, "--out", str(out)] + (["--quick"] if quick else [])
    log(f"compare: stage {stage} at the reference commit")
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        tail = (proc.stderr or proc.stdout)[-600:].strip()
        log(f"compare: stage {stage} did not run at the reference commit: {tail}")
        return []
    return parse_table(out.read_text())


_NUM = re.compile(r"^\s*([0-9][0-9,]*(?:\.[0-9]+)?)\s*(.*?)\s*$")


def parse_table(text: str) -> list[RefRow]:
    """The rows of a results file's table: stage, Pantau's value and unit, and the ratio."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] in ("stage", "") or set(cells[1]) <= set("-:"):
            continue
        m = _NUM.match(cells[1])
        if not m:
            continue
        try:
            ratio: float | None = float(cells[3].replace(",", ""))
        except ValueError:
            ratio = None
        cpu = cells[6] if len(cells) > 6 else "—"
        rows.append(RefRow(cells[0], float(m.group(1).replace(",", "")), m.group(2), ratio, cpu))
    return rows


def table(rows: list[Row], ref: list[RefRow], ref_name: str) -> str:
    """This commit beside REF, row by row: each value and its change."""
    by_stage = {r.stage: r for r in ref}
    lines = [f"| stage | this commit | {ref_name} | this / {ref_name} | better? | ratio to own baseline, this / {ref_name} "
             f"| CPU per report, this commit | CPU per report, {ref_name} |",
             "|---|---:|---:|---:|:-:|---:|---:|---:|"]
    for r in rows:
        other = by_stage.get(r.stage)
        mine = f"{_num(r.pantau)} {r.unit}"
        if other is None:
            lines.append(f"| {r.stage} | {mine} | — | — | — | {r.ratio:.2f} / — | {_cpu(r)} | — |")
            continue
        change = r.pantau / other.value if other.value else 0.0
        lower = r.unit in LOWER_IS_BETTER
        better = "—" if abs(change - 1) < 0.05 else ("yes" if (change < 1) == lower else "no")
        theirs = f"{other.ratio:.2f}" if other.ratio is not None else "—"
        lines.append(f"| {r.stage} | {mine} | {_num(other.value)} {other.unit} | {change:.2f} | {better} "
                     f"| {r.ratio:.2f} / {theirs} | {_cpu(r)} | {other.cpu} |")
    missing = [o.stage for o in ref if o.stage not in {r.stage for r in rows}]
    for s in missing:
        o = by_stage[s]
        lines.append(f"| {s} | — | {_num(o.value)} {o.unit} | — | — | — | — | {o.cpu} |")
    return "\n".join(lines)


def _cpu(r: Row) -> str:
    if r.cpu_us is None or r.base_cpu_us is None:
        return "—"
    return f"{r.cpu_us:,.0f} / {r.base_cpu_us:,.0f} µs ({r.cpu_us / r.base_cpu_us:.1f}×)" if r.base_cpu_us else "—"


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"
