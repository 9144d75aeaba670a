"""The `scoring` section of the config: bucket size, baseline method and its parameters,
severity rules, hysteresis and auto-resolve. (Placeholder until the scoring service lands.)"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ScoringSettings(BaseModel):
    model_config = ConfigDict(extra="allow")
