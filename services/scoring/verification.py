"""An operator's decision applied to the cell that counted the report. Pure functions, no Kafka.

A report counts `unverified_weight` (0.5) until verified and 1.0 once verified; rejected, it
counts nothing. A decision moves the report's weight in the bucket of its `occurred_at` from
what it is to what the decision says:

- in the running bucket: its weighted count (and `observed`, for a rejection), and its id
  leaves `report_ids`, the running severity being taken again from the ids left;
- in a closed bucket still in the ring: that bucket's history, so the baseline learns the
  correction as it learns from a late report (the level of the running bucket moves only
  through the baseline);
- older than the ring: nothing left to change; the decision is recorded all the same.

Each cell keeps the last decision per report (`Cell.decisions`, written with the cell in its
changelog), so the same decision applied again (a redelivery, a second click) changes
nothing, and verify → reject → verify ends where the last one says. A decision for a report
the cell has not counted yet (the decision overtook it between topics) is kept *pending* and
applied when the report arrives (`on_report`).

A rejection in the running bucket lowers the level at once: when the bucket, without the
report, no longer calls for the level it raised (its weighted count back under the bound, or
the grave report gone), the level falls to what the bucket still calls for, or to what the
closed buckets held when it opened if that is higher (levels.withdraw), without waiting for
`hysteresis_buckets` quiet buckets. A rejection in a closed bucket corrects the baseline only;
a level held from earlier buckets falls as any level falls.
"""

from __future__ import annotations

from base64 import b64encode
from typing import Any

from services.scoring.levels import withdraw
from services.scoring.baseline import (
    Cell, Scoring, _roll_to, _seen, appraise, bucket_start, parse_time, report_key, running, settle,
)
from shared.scores import ScoreUpdate
from shared.verifications import VERIFIED, reason

MAX_DECISIONS = 256   # decisions kept per cell; the oldest go first
APPLIED, PENDING, REPEATED = "applied", "pending", "repeated"


def _weight(decision: str | None, verified: bool, sc: Scoring) -> float:
    if decision is None:
        return 1.0 if verified else sc.settings.unverified_weight
    return 1.0 if decision == VERIFIED else 0.0


def decide(cell: Cell, d: dict[str, Any], now: float, sc: Scoring) -> tuple[str | None, str]:
    """Apply decision `d` (a VerificationEvent as a dict) to `cell`. Returns the reason line
    naming the decision (when it changed the cell; see `announce`), and the outcome."""
    ident = report_key(d["source"], d["event_id"])
    k = b64encode(ident).decode()
    held = cell.decisions.get(k)
    if held is not None and held[0] == d["decision"] and held[1]:
        return None, REPEATED
    if not _seen(cell.recent, ident):
        _remember(cell, k, [d["decision"], False, d["by_name"]])
        return None, PENDING
    before = held[0] if held is not None and held[1] else None
    return _apply(cell, k, d["event_id"], d["occurred_at"], bool(d.get("verified")), before,
                  d["decision"], d["by_name"], now, sc), APPLIED


def on_report(cell: Cell, report: dict[str, Any], now: float, sc: Scoring) -> str | None:
    """A report just counted in `cell`: apply a decision that arrived before it, if any, and
    return its reason line."""
    k = b64encode(report_key(report["source"], report["event_id"])).decode()
    held = cell.decisions.get(k)
    if held is None or held[1]:
        return None
    return _apply(cell, k, report["event_id"], report["occurred_at"], bool(report.get("verified")), None,
                  held[0], held[2], now, sc)


def _apply(cell: Cell, k: str, event_id: str, occurred_at: str, verified: bool, before: str | None,
           decision: str, by_name: str, now: float, sc: Scoring) -> str:
    rb = bucket_start(parse_time(occurred_at), cell.region, sc.size)
    _roll_to(cell, max(rb, bucket_start(now, cell.region, sc.size)), now, sc)
    old, new = _weight(before, verified, sc), _weight(decision, verified, sc)
    delta = new - old
    if rb == cell.bucket:
        cell.weighted = max(0.0, cell.weighted + delta)
        cell.observed += (old == 0 and new > 0) - (old > 0 and new == 0)
        if new == 0:
            cell.report_ids = [r for r in cell.report_ids if r[0] != event_id]
            cell.severity = max((r[1] for r in cell.report_ids), default=0)
            withdraw(cell.hold, appraise(cell, sc)[0])
    else:
        age = (cell.bucket - rb) // sc.size
        if 0 < age <= sc.history:
            cell.history[-age] = max(0.0, cell.history[-age] + delta)
    _remember(cell, k, [decision, True, by_name])
    return reason(decision, by_name, event_id, sc.settings.language)


def _remember(cell: Cell, k: str, entry: list[Any]) -> None:
    cell.decisions.pop(k, None)
    cell.decisions[k] = entry
    while len(cell.decisions) > MAX_DECISIONS:
        del cell.decisions[next(iter(cell.decisions))]


def announce(cell: Cell, whys: list[str], now: float, sc: Scoring) -> ScoreUpdate:
    """The cell's score update after the decisions `whys` of a batch, whether or not its level
    changed: the coordinator and the incident's timeline learn who decided, and the weighted
    count as the batch left it. Made once per cell after the batch's other reports, so a later
    report's update cannot replace the one naming the decision."""
    target, est = appraise(cell, sc)
    cell.emitted = [cell.emitted[0], None]  # no alarm state equals None: settle speaks, and records the new state
    # A level below the last one sent can only be a rejection's doing here: the batch's reports
    # raise it again in settle, and closing buckets on the way reassessed and sent already.
    update = settle(cell, running(cell), est, target, lambda: [i for i, _ in cell.report_ids], now, sc,
                    withdrawn=True)
    assert update is not None
    return update.model_copy(update={"reasons": [*update.reasons, *whys]})
