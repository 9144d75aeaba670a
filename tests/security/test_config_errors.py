"""The config loader on arbitrary documents, one step past tests/shared/test_config.py (which
shows it answers with a Config or a ConfigError): every problem it reports starts with a key
path into the document the operator wrote — or `(file)` / `(top level)` — so the person
editing the file can find the line; and no secret value from the document is repeated."""

from __future__ import annotations

import re

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import ConfigError, parse
from tests.shared.test_config import KEYS, TREE

SECRET = "s3cr3t-value-never-echoed"


def names_a_key_path(problem: str, top_keys: set[str]) -> bool:
    """`(file): ...`, `(top level): ...`, or a path starting at a top-level key of the document:
    `key: ...`, `key.sub...: ...`, `key[0]...: ...`."""
    if problem.startswith(("(file): ", "(top level): ")):
        return True
    return any(problem.startswith(k) and re.match(r"[.\[]|: \S", problem[len(k):]) for k in top_keys)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Unknown top-level keys of letters and digits (any script): YAML itself folds line breaks and
# strips spaces in keys, which is not the loader's doing.
@given(tree=st.dictionaries(st.sampled_from(KEYS) | st.text(st.characters(categories=["L", "N"]), min_size=1,
                                                            max_size=8),
                            TREE, max_size=5),
       secret_at=st.sampled_from(["sources", "operators", "channels", "redis"]))
def test_every_problem_names_a_key_path_of_the_document(tree, secret_at):
    if secret_at == "sources":
        tree["sources"] = [{"id": "a", "api_key": SECRET, "regions": tree.get("regions", ["99"])}]
    elif secret_at == "operators":
        tree["operators"] = [{"id": "o", "token": SECRET, "name": tree.get("name", 5)}]
    elif secret_at == "channels":
        tree["channels"] = [{"id": "h", "type": "webhook", "url": "ftp://x", "secret": SECRET}]
    else:
        tree["redis"] = {"url": 5, "password": SECRET}
    try:
        parse(yaml.safe_dump(tree, allow_unicode=True), "fuzz.yaml", env={})
    except ConfigError as e:
        assert e.problems
        for p in e.problems:
            assert names_a_key_path(p, {str(k) for k in tree}), (p, list(tree))
        assert SECRET not in str(e)
