"""Benchmark results: one Row per measurement, rendered as the markdown table that
`python -m bench` prints and writes to bench/results/latest.md."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path


@dataclass
class Row:
    """One measurement: Pantau's rate beside the baseline's, both in `unit`."""

    stage: str
    unit: str  # "req/s" or "reports/s"
    pantau: float
    baseline: float
    target: float | None  # None: no target given for this measurement
    p50_ms: float | None = None
    p99_ms: float | None = None
    base_p50_ms: float | None = None
    base_p99_ms: float | None = None
    cpu_us: float | None = None  # CPU of the process under test per report
    base_cpu_us: float | None = None
    notes: list[str] = field(default_factory=list)
    lower_is_better: bool = False  # e.g. memory: met when pantau stays below the target
    # The targets are ratios to the baseline of the same run (any machine can meet them):
    # at most `ratio_target` where lower is better, else at least; CPU per report at most
    # `cpu_ratio_target` times the baseline's.
    ratio_target: float | None = None
    cpu_ratio_target: float | None = None

    @property
    def ratio(self) -> float:
        return self.pantau / self.baseline if self.baseline else 0.0

    @property
    def cpu_ratio(self) -> float | None:
        return self.cpu_us / self.base_cpu_us if self.cpu_us is not None and self.base_cpu_us else None

    def checks(self) -> list[tuple[str, bool]]:
        """Each target of the row with whether this run met it."""
        out = []
        if self.target is not None:
            out.append(("absolute", self.pantau < self.target if self.lower_is_better else self.pantau >= self.target))
        if self.ratio_target is not None:
            out.append(("ratio", self.ratio <= self.ratio_target if self.lower_is_better
                        else self.ratio >= self.ratio_target))
        if self.cpu_ratio_target is not None:
            out.append(("CPU", self.cpu_ratio is not None and self.cpu_ratio <= self.cpu_ratio_target))
        return out

    @property
    def met(self) -> bool | None:
        checks = self.checks()
        return None if not checks else all(ok for _, ok in checks)


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _lat(p50: float | None, p99: float | None) -> str:
    if p50 is None or p99 is None:
        return "—"
    return f"{p50:.1f} / {p99:.1f} ms"


def _cpu(mine: float | None, base: float | None) -> str:
    if mine is None or base is None:
        return "—"
    return f"{mine:,.0f} / {base:,.0f} µs ({mine / base:.1f}×)" if base else f"{mine:,.0f} / — µs"


def _target(r: Row) -> str:
    parts = []
    if r.target is not None:
        parts.append(f"{'<' if r.lower_is_better else '≥'} {_num(r.target)} {r.unit}")
    if r.ratio_target is not None:
        parts.append(f"ratio {'≤' if r.lower_is_better else '≥'} {r.ratio_target:g}")
    if r.cpu_ratio_target is not None:
        parts.append(f"CPU ≤ {r.cpu_ratio_target:g}×")
    return ", ".join(parts) or "—"


def _met(r: Row) -> str:
    checks = r.checks()
    if not checks:
        return "—"
    missed = [name for name, ok in checks if not ok]
    return "yes" if not missed else "no (" + ", ".join(missed) + ")"


def table(rows: list[Row]) -> str:
    lines = [
        "| stage | pantau | baseline | ratio | pantau p50 / p99 | baseline p50 / p99 "
        "| CPU per report, pantau / baseline | target | met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.stage} | {_num(r.pantau)} {r.unit} | {_num(r.baseline)} {r.unit} | {r.ratio:.2f} "
            f"| {_lat(r.p50_ms, r.p99_ms)} | {_lat(r.base_p50_ms, r.base_p99_ms)} "
            f"| {_cpu(r.cpu_us, r.base_cpu_us)} | {_target(r)} | {_met(r)} |"
        )
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def git_commit(repo: Path) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout.strip()
        # The results files and README tables a run writes itself do not make the code dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!bench/results", ":!README.md"], cwd=repo, capture_output=True, text=True).stdout.strip()
        return f"{sha}{' (with uncommitted changes)' if dirty else ''}"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def document(rows: list[Row], setup: list[str], mode: str, repo: Path, load_before: str) -> str:
    """The whole results file: when, what code, which machine, the table and its notes."""
    cores = usable_cores()
    head = [
        "# Pantau benchmark results",
        "",
        f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- commit: {git_commit(repo)}",
        f"- machine: {cpu_model()}, {cores} cores ({os.cpu_count()} online), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- mode: {mode}",
        f"- load average (1 / 5 / 15 min) before the run: {load_before}; after: {load_average()} "
        "(other work on the machine makes every number lower)",
    ]
    head.append("- CPU per report is the service process's CPU time over the timed window divided by the "
                "reports it handled: it moves less than the rates when other work shares the machine")
    if cores <= 2:
        head.append(f"- **only {cores} cores**, shared by the load generator, the service under test, the "
                    "broker and Redis: absolute numbers are a floor; compare the ratio to the baseline")
    body = ["", table(rows), ""]
    notes = [f"- **{r.stage}**: {n}" for r in rows for n in r.notes]
    tail = ["## How each number is measured", "", *[f"- {s}" for s in setup]]
    if notes:
        tail += ["", "## Notes from this run", "", *notes]
    return "\n".join(head + body + tail) + "\n"
