"""The closed list of report categories (contract: Categories)."""

from __future__ import annotations

from enum import Enum


class Category(str, Enum):
    """One category of social-conflict report, in snake_case as it travels on the wire."""

    election_dispute = "election_dispute"
    mass_mobilization = "mass_mobilization"
    sara_incitement = "sara_incitement"
    hoax_disinformation = "hoax_disinformation"
    communal_clash = "communal_clash"
    land_resource_conflict = "land_resource_conflict"
    political_violence = "political_violence"
    security_threat = "security_threat"
    other = "other"


CATEGORIES = tuple(c.value for c in Category)

__all__ = ["Category", "CATEGORIES"]
