"""The alert ladder (contract: level): its names in order, the rank of each, and their types."""

from __future__ import annotations

from typing import Literal

LEVELS = ("normal", "waspada", "siaga", "awas")
LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}
Level = Literal["normal", "waspada", "siaga", "awas"]
# The levels that open an incident: normal never pages anyone.
AlertLevel = Literal["waspada", "siaga", "awas"]

__all__ = ["LEVELS", "LEVEL_RANK", "Level", "AlertLevel"]
