"""The one pattern for the ids a config gives its contacts, channels, policies, operators and
rotation members, and the targets (`contact:<id>`) that name them; and the contract's pattern
for a source id (ReportEvent `source`), which a config's `sources[].id` must also match."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# No ':' in an id: a target is `<kind>:<id>`, so a contact id with one could never be paged.
ID_CHARS = r"[A-Za-z0-9._-]{1,64}"
ID_PATTERN = rf"^{ID_CHARS}$"
TARGET_PATTERN = rf"^(contact:{ID_CHARS}|oncall:kabkota|oncall:province|operators)$"
_ID = re.compile(ID_PATTERN)
# Contract v1: 1-64 chars of [a-z0-9-]; a source id is also a ReportEvent's `source`. The length
# is a separate bound so that a long id is told "too long" rather than "does not match".
SOURCE_ID_PATTERN = r"^[a-z0-9-]+$"
SOURCE_ID_MAX = 64


def checked_id(v: str) -> str:
    """`v` if it is a valid id, else a ValueError that says what an id may be."""
    if not _ID.match(v):
        why = " (':' separates a target's kind from its id, as in contact:<id>)" if ":" in v else ""
        raise ValueError(f"must be 1-64 letters, digits, '.', '_' or '-'{why}")
    return v


Id = Annotated[str, AfterValidator(checked_id)]

__all__ = ["ID_CHARS", "ID_PATTERN", "SOURCE_ID_MAX", "SOURCE_ID_PATTERN", "TARGET_PATTERN", "Id", "checked_id"]
