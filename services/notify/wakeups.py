"""Wake-ups: bring forward the step timers of incidents that were held back, by a province
incident (inhibition) or a silence, once that hold is lifted, so they resume at once rather
than at their next recheck."""

from __future__ import annotations

from services.notify.policy import silence_matches
from services.notify.store import K_OPEN, IncidentStore, decoded, kabkota_of_province
from shared.regions import registry
from services.notify.incident import Change, incident_key


async def wake_held(store: IncidentStore, province_id: str, now: float, region: str | None = None,
                    category: str | None = None) -> int:
    """Bring forward the timers of open incidents held back by `province_id` (it resolved
    or its level fell), so they resume at once rather than at their next recheck. With the
    province's `region` and `category`, only its kabupaten/kota incidents are read, not
    every open incident."""
    if region is not None and category is not None:
        _, pairs = await store.province_view(region, category, kabkota_of_province(region))
        ids = [i for i in await store.r.hmget(K_OPEN, [incident_key(p.region_code, p.category) for p in pairs])
               if i is not None] if pairs else []
        candidates = [i for i in await store.get_many([decoded(i) for i in ids]) if i is not None]
    else:
        candidates = await store.open_incidents()
    n = 0
    for inc in candidates:
        if inc.is_open and inc.inhibited_by == province_id:
            await store.set_timer(inc.id, now)
            n += 1
    return n


async def wake_matching(store: IncidentStore, matchers: dict, now: float) -> int:
    """Bring forward the timers of open incidents a lifted silence was holding back."""
    n = 0
    for inc in await store.open_incidents():
        if inc.is_open and silence_matches(matchers, inc.region_code, inc.category):
            due = inc.wakeup()
            if due is not None:
                await store.set_timer(inc.id, min(due, now))
                n += 1
    return n


async def release_held(store: IncidentStore, change: Change | None, now: float) -> int:
    """A province incident that resolved, was acknowledged or fell a level, or a kabupaten/kota incident that
    resolved (the situation may now be narrower than `notify.inhibit.min_kabkota`), may let
    held kabupaten/kota incidents page again: bring their timers forward so the scheduler
    decides now (services.notify.inhibit), not at their next recheck."""
    if change is None or change.incident.kind != "score":
        return 0
    inc = change.incident
    if "." not in inc.region_code:
        if change.resolved or change.acknowledged or any(e.get("kind") == "level" for e in change.timeline):
            return await wake_held(store, inc.id, now, inc.region_code, inc.category)
        return 0
    if change.resolved:
        province = registry().province_of(inc.region_code)
        province_id = await store.open_id(incident_key(province, inc.category))
        return await wake_held(store, province_id, now, province, inc.category) if province_id else 0
    return 0
