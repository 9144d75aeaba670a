"""Words shown to people, from one catalogue (shared/data/words.toml) where each word stands as
[Bahasa Indonesia, English] side by side, so that neither language falls behind the other."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

LANGUAGES = ("id", "en")


@cache
def _catalogue() -> dict[str, dict[str, list[str]]]:
    return tomllib.loads(resources.files("shared").joinpath("data/words.toml").read_text(encoding="utf-8"))


def words(section: str) -> dict[str, dict[str, str]]:
    """One screen's words by language: `words("console")["en"]["login"]` → "Log in"."""
    pairs = _catalogue()[section]
    return {lang: {key: pair[i] for key, pair in pairs.items()} for i, lang in enumerate(LANGUAGES)}
