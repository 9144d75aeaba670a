"""The one base for every model read from a config file or an HTTP body: unknown keys are refused."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A pydantic model that refuses unknown keys, so a typo is named instead of ignored."""

    model_config = ConfigDict(extra="forbid")


__all__ = ["Strict"]
