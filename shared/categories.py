"""The closed list of report categories (contract: Categories)."""

from __future__ import annotations

from enum import Enum

CATEGORIES = (
    "election_dispute", "mass_mobilization", "sara_incitement", "hoax_disinformation", "communal_clash",
    "land_resource_conflict", "political_violence", "security_threat", "other",
)

# The same list as a str enum, for models and OpenAPI documents: `Category("other") == "other"`.
Category = Enum("Category", [(c, c) for c in CATEGORIES], type=str, module=__name__)

__all__ = ["Category", "CATEGORIES"]
