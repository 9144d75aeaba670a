"""What every stage is given: the budget of the run (full or quick) and where to put extras."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Budget:
    """Bounds of each measurement: every run stops at its count or its time, whichever first."""

    name: str
    duration_s: float  # per HTTP measurement
    warmup_s: float
    connections: int  # single-report requests in flight
    batch_connections: int  # batch requests in flight
    single_max: int  # distinct single reports Pantau may be sent
    batch_max: int  # distinct batches Pantau may be sent
    baseline_max: int  # requests a baseline may be sent (its bodies are reused)
    raw_n: int  # raw-topic messages for the validator and its baseline
    raw_timeout_s: float


FULL = Budget("full", duration_s=10, warmup_s=2, connections=64, batch_connections=8, single_max=100_000,
              batch_max=500, baseline_max=2_000_000, raw_n=100_000, raw_timeout_s=120)
QUICK = Budget("quick", duration_s=2, warmup_s=0.5, connections=64, batch_connections=8, single_max=5_000,
               batch_max=20, baseline_max=50_000, raw_n=5_000, raw_timeout_s=60)


@dataclass
class Context:
    """Handed to each stage's run(): the budget, options, and the "how measured" lines it adds."""

    budget: Budget
    profile_dir: Path | None = None
    keep: bool = False
    setup: list[str] = field(default_factory=list)  # "how it was measured", one line each

    def log(self, msg: str) -> None:
        print(f"bench: {msg}", flush=True)
