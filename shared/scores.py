"""The record of `pantau.scores.v1` (contract: Score update), written by scoring and read by notify."""

from __future__ import annotations

from typing import Annotated

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.categories import CATEGORIES
from shared.levels import LEVELS
from shared.regions import known_region, registry
from shared.times import parse_ts


def _one_of(names: tuple[str, ...], what: str):
    def check(v: str) -> str:
        if v not in names:
            raise ValueError(f"unknown {what} {v!r}")
        return v
    return check


def _timestamp(v: str) -> str:
    parse_ts(v)
    return v


class ScoreUpdate(BaseModel):
    """One score update for a (region, category) bucket, keyed by region code on the topic.

    Fields notify does not act on have defaults so that a reader keeps working when a writer
    leaves them out; scoring always fills every one. Unknown fields are ignored for the same
    reason: a newer writer may add some.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    region_code: Annotated[str, AfterValidator(known_region)]
    category: Annotated[str, AfterValidator(_one_of(CATEGORIES, "category")),
                        Field(json_schema_extra={"enum": list(CATEGORIES)})]
    bucket_start: Annotated[str, AfterValidator(_timestamp)]
    bucket_end: str | None = None
    observed: int = 0
    weighted: float = 0.0
    expected: float | None = None
    upper: float | None = None
    method: str = ""
    alarm: bool = False
    level: Annotated[str, AfterValidator(_one_of(LEVELS, "level")), Field(json_schema_extra={"enum": list(LEVELS)})]
    reasons: list[str] = Field(default_factory=list)
    report_ids: list[str] = Field(default_factory=list)
    computed_at: str | None = None

    @property
    def bucket_ts(self) -> float:
        return parse_ts(self.bucket_start)

    @property
    def incident_region(self) -> str:
        """Incidents live at kabupaten/kota level (kecamatan and desa roll up), or province."""
        return registry().kabkota_of(self.region_code)

    def to_json(self) -> bytes:
        """The topic value, fields in contract order."""
        return orjson.dumps(self.__dict__)


__all__ = ["ScoreUpdate"]
