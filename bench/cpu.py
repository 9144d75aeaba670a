"""CPU time of processes over a measurement, from /proc: on a 2-core machine it says which
process held the cores, and CPU per report compares Pantau with its baseline independently
of how busy the machine was."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (all its threads), or 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


class CpuMeter:
    """CPU seconds used by each named process between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.seconds: dict[str, float] = {}
        self._c0: dict[str, float] = {}

    def start(self) -> "CpuMeter":
        self._c0 = {n: cpu_seconds(p) for n, p in self.pids.items()}
        return self

    def stop(self) -> "CpuMeter":
        self.seconds = {n: cpu_seconds(p) - self._c0[n] for n, p in self.pids.items()}
        return self

    def __enter__(self) -> "CpuMeter":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def cores(self, window_s: float, extra: dict[str, float] | None = None) -> str:
        """"name 0.97, ..." in cores over the timed window (`extra`: CPU seconds measured elsewhere)."""
        secs = {**self.seconds, **(extra or {})}
        return ", ".join(f"{n} {s / window_s:.2f}" for n, s in secs.items()) if window_s > 0 else "n/a"
