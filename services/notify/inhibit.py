"""Inhibition, as a pure decision: an open province incident holds back the pages of the
kabupaten/kota incidents of the same category inside that province (anchors: "a province
incident can hold back its kabupaten pages").

During a province-wide situation (a Pilkada dispute across Kalimantan Utara, say) every
kabupaten/kota crossing its own threshold would otherwise page its coordinator separately
on top of the province page, at the very moment the province is already handling it. So a
kabupaten/kota incident still opens, is listed and keeps its reasons, but its due step waits
(the timeline says `inhibited`, naming the province incident) until the province incident is
resolved, falls below it, or stops paging; then it resumes from the step it was on.

What holds back, and what never does:
  * only a `score` incident of the province itself (code `65` for a `65.xx` incident), same
    category, not resolved, and by default not acknowledged either
    (`notify.inhibit.while_acknowledged: false`): an acknowledgement says someone at the
    province has it, not that they see each kabupaten/kota, and a single ack would otherwise
    silence every kabupaten page of the category for as long as the province incident stays
    open. Setting it true keeps holding back after the ack (less noise, more risk).
  * a province incident that pages nobody (no policy took it) holds nothing back, or neither
    incident would reach anyone.
  * the situation must be wider than this kabupaten/kota: at least `min_kabkota` (default 2)
    kabupaten/kota incidents of the category open in the province, this one included. A
    province cell carries its members' severity, so one severity-5 clash in Tarakan raises
    both `65.71` and `65` to awas; that province incident is Tarakan's own echo, and holding
    Tarakan's page back would leave the coordinator nearest to it unpaged.
  * a kabupaten/kota incident at a *higher* level than the province incident is never held:
    `awas` in Tarakan while the province is only `siaga` is news the province page does not
    carry (the "imminent large-scale violence" rung), so it pages at once. At the same or a
    lower level it is covered by the province page and waits.

`scheduler.Scheduler` asks `inhibitor` when a step is due; nothing here reads Redis or a clock.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from shared.levels import LEVEL_RANK
from shared.regions import registry


class IncidentLike(Protocol):
    """What inhibition reads of an incident (services.notify.incident.Incident has it)."""

    id: str
    kind: str
    region_code: str
    category: str
    level: str
    status: str

    @property
    def escalation(self) -> object: ...


def province_pair(region_code: str, category: str) -> tuple[str, str] | None:
    """The (province, category) pair whose incident may hold this one back; None for a
    province incident (nothing sits above it)."""
    if registry().level(region_code) != 2:
        return None
    return registry().province_of(region_code), category


def spread(target: IncidentLike, others: Sequence[IncidentLike]) -> int:
    """How many kabupaten/kota incidents of `target`'s province and category are open,
    `target` included."""
    pair = province_pair(target.region_code, target.category)
    regions = {target.region_code}
    for o in others:
        if o.kind == "score" and o.status != "resolved" and province_pair(o.region_code, o.category) == pair:
            regions.add(o.region_code)
    return len(regions)


def inhibitor(target: IncidentLike, province: IncidentLike | None, others: Sequence[IncidentLike] = (),
              enabled: bool = True, min_kabkota: int = 2, while_acknowledged: bool = False) -> IncidentLike | None:
    """The province incident that holds back `target`'s pages now, or None (page as usual).
    `others` are the other open incidents (any region; those that matter are picked here)."""
    if not enabled or province is None:
        return None
    if target.kind != "score" or province.kind != "score":
        return None  # a silent-source incident is about a feed, not about the region
    pair = province_pair(target.region_code, target.category)
    if pair is None or (province.region_code, province.category) != pair:
        return None
    if province.status == "resolved" or province.id == target.id:
        return None
    if province.status == "acknowledged" and not while_acknowledged:
        return None
    if getattr(province.escalation, "policy_id", None) is None:
        return None  # the province incident pages nobody: holding back would silence both
    if LEVEL_RANK.get(target.level, 0) > LEVEL_RANK.get(province.level, 0):
        return None  # more severe than the province picture: not covered by its page
    if spread(target, others) < min_kabkota:
        return None  # the province incident is this kabupaten/kota's own echo
    return province


def release_reason(target: IncidentLike, holder: IncidentLike | None, others: Sequence[IncidentLike] = (),
                   enabled: bool = True, min_kabkota: int = 2, while_acknowledged: bool = False) -> str:
    """Why a held incident may page again, in words for its timeline."""
    if not enabled:
        return "inhibition is switched off (notify.inhibit.province_over_kabupaten)"
    if holder is None or holder.status == "resolved":
        return "the province incident is resolved"
    if holder.status == "acknowledged" and not while_acknowledged:
        return "the province incident is acknowledged (notify.inhibit.while_acknowledged is off)"
    if LEVEL_RANK.get(target.level, 0) > LEVEL_RANK.get(holder.level, 0):
        return f"this incident ({target.level}) is now above the province incident ({holder.level})"
    if spread(target, others) < min_kabkota:
        return "no other kabupaten/kota incident of this category is open in the province"
    return "the province incident no longer pages anyone"


__all__ = ["inhibitor", "province_pair", "release_reason", "spread"]
