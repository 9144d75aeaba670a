"""Test-only: makes notify kill itself (SIGKILL) at a chosen point of firing an escalation step,
so the crash tests (tests/notify/test_e2e.py) can check that nothing is lost or sent twice.

Production code carries no fault point. The notify service calls `install` only when
`PANTAU_NOTIFY_FAULT` is set, and `install` wraps the scheduler from outside. The variable is
a comma-separated list of `<point>:<glob>`, the glob matched against
`<incident id>/<event key>`:
  - `due`: a step is due, nothing submitted yet;
  - `after_submit`: its deliveries are submitted, the incident's new state not yet saved.
"""

from __future__ import annotations

import contextvars
import fnmatch
import logging
import os
import signal
from typing import Any

ENV = "PANTAU_NOTIFY_FAULT"

log = logging.getLogger("pantau.notify.faults")
_firing: contextvars.ContextVar[str | None] = contextvars.ContextVar("pantau_fault_firing", default=None)


def _maybe_die(specs: list[str], point: str, subject: str) -> None:
    for spec in specs:
        if spec.startswith(point + ":") and fnmatch.fnmatchcase(subject, spec[len(point) + 1:]):
            log.warning("fault injection %s at %s: killing this process", point, subject)
            os.kill(os.getpid(), signal.SIGKILL)


def install(scheduler: Any, spec: str | None = None) -> None:
    """Wrap `scheduler` so that it dies at the points `spec` (default: the environment) names."""
    specs = [s for s in (spec if spec is not None else os.environ.get(ENV, "")).split(",") if s]
    if not specs:
        return
    fire, save = scheduler._fire, scheduler.store.save

    async def fire_or_die(inc: Any, policy: Any, step: Any, now: float) -> Any:
        subject = f"{inc.id}/{step.event_key}"
        _maybe_die(specs, "due", subject)
        token = _firing.set(subject)
        try:
            return await fire(inc, policy, step, now)
        finally:
            _firing.reset(token)

    async def save_or_die(change: Any, expected_version: int) -> Any:
        # Inside a firing, the first save is the one that records its submitted deliveries.
        subject = _firing.get()
        if subject is not None:
            _maybe_die(specs, "after_submit", subject)
        return await save(change, expected_version)

    scheduler._fire = fire_or_die
    scheduler.store.save = save_or_die


__all__ = ["ENV", "install"]
