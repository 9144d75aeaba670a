"""Keep the garbage collector's full passes short in the long-running services.

A full (generation 2) collection walks every tracked object. Right after start-up most of
them are the imports (FastAPI, pydantic, aiokafka: ~70,000 objects) and the region registry,
which live as long as the process; each full pass over them took 75 ms on an idle bench
machine and 80–190 ms under load, stalling the event loop (a report that arrived meanwhile
waited them out in the gateway or in notify). Freezing what exists once start-up is done
moves it out of the collector's sight.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Call when start-up is done (config read, registry loaded, clients built): what exists
    now is kept for the life of the process, so the collector stops walking it."""
    from shared.regions import registry

    registry()  # loaded now, not on the first request, and frozen with the rest
    gc.collect()
    gc.freeze()
