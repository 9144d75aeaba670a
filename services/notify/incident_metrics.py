"""Metrics for a saved incident change, counted the same way wherever the change was made
(the score consumer, the API, the reply pollers, the watchdog)."""

from __future__ import annotations

from shared import metrics
from services.notify.incident import Change


def count_change(change: Change | None, category: str | None = None) -> None:
    """Count what `change` did: opened, acknowledged (and how long that took), resolved."""
    if change is None:
        return
    inc = change.incident
    if change.opened:
        metrics.INCIDENTS_OPENED.labels(category or inc.category).inc()
    if change.acknowledged:
        metrics.INCIDENTS_ACKNOWLEDGED.inc()
        if inc.acknowledged_at is not None:
            metrics.TIME_TO_ACKNOWLEDGE.observe(max(0.0, inc.acknowledged_at - inc.triggered_at))
    if change.resolved:
        metrics.INCIDENTS_RESOLVED.labels(change.resolved).inc()
