"""The closed list of report categories (contract: Categories)."""

from __future__ import annotations

from enum import Enum

CATEGORIES = (
    "election_dispute", "mass_mobilization", "sara_incitement", "hoax_disinformation", "communal_clash",
    "land_resource_conflict", "political_violence", "security_threat", "other",
)

# The same list as a str enum, for models and OpenAPI documents: `Category("other") == "other"`.
Category = Enum("Category", [(c, c) for c in CATEGORIES], type=str, module=__name__)

# What people read: the category in Bahasa Indonesia and English (pages, field-report bots, CAP).
CATEGORY_NAMES: dict[str, dict[str, str]] = {
    "id": {
        "election_dispute": "Sengketa Pilkada",
        "mass_mobilization": "Pengerahan massa",
        "sara_incitement": "Ujaran kebencian SARA",
        "hoax_disinformation": "Hoaks/disinformasi",
        "communal_clash": "Bentrok antarkelompok",
        "land_resource_conflict": "Konflik agraria/SDA",
        "political_violence": "Kekerasan politik",
        "security_threat": "Ancaman keamanan",
        "other": "Lainnya",
    },
    "en": {
        "election_dispute": "Election dispute",
        "mass_mobilization": "Mass mobilisation",
        "sara_incitement": "SARA incitement",
        "hoax_disinformation": "Hoax/disinformation",
        "communal_clash": "Communal clash",
        "land_resource_conflict": "Land/resource conflict",
        "political_violence": "Political violence",
        "security_threat": "Security threat",
        "other": "Other",
    },
}

__all__ = ["Category", "CATEGORIES", "CATEGORY_NAMES"]
