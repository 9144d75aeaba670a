"""The fault suite runs only through `make test-faults` (PANTAU_FAULTS=1): it takes several
minutes and kills every part of the stack, so a plain `pytest` run leaves it out."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("PANTAU_FAULTS") == "1":
        return
    skip = pytest.mark.skip(reason="the fault suite runs with `make test-faults` (PANTAU_FAULTS=1)")
    for item in items:
        if "tests/faults/" in item.nodeid:
            item.add_marker(skip)
