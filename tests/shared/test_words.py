"""The word catalogue: every word of every screen in both languages."""

import tomllib
from importlib import resources

from shared.words import LANGUAGES, words


def test_every_word_has_both_languages_and_neither_is_empty():
    catalogue = tomllib.loads(resources.files("shared").joinpath("data/words.toml").read_text(encoding="utf-8"))
    bad = [f"{section}.{key}" for section, pairs in catalogue.items() for key, pair in pairs.items()
           if len(pair) != len(LANGUAGES) or not all(isinstance(w, str) and w.strip() for w in pair)]
    assert not bad, bad


def test_a_screen_reads_its_words_by_language():
    console = words("console")
    assert console["id"]["logout"] == "Keluar" and console["en"]["logout"] == "Log out"
    assert console["id"].keys() == console["en"].keys()
