"""The codebase's shape, as issue 16 left it: an HTTP API never imports its service's Kafka loop
(directly or through another module), no module in services/ or shared/ grows past ~400
lines without saying why at its top, and every public class says in a sentence what it is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The Kafka loops: what consumes a topic and decides, as opposed to what answers HTTP.
KAFKA_LOOPS = {"services.notify.consumer", "services.notify.scheduler", "services.notify.watchdog",
               "services.notify.replies", "services.notify.delivery", "services.notify.service",
               "services.ingest.validator", "services.scoring.agents", "services.scoring.app"}
MAX_LINES = 420  # "~400"


def _module_file(name: str) -> Path | None:
    base = REPO / name.replace(".", "/")
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.exists():
            return p
    return None


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith(("services.", "shared."))}


def _reached(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        todo.extend(_imports(path))
    return seen


@pytest.mark.parametrize("api", ["services.ingest.api", "services.notify.api"])
def test_no_api_imports_a_kafka_loop(api: str):
    reached = _reached(api)
    assert len(reached) > 3, reached  # the walk found the API's own modules
    assert not reached & KAFKA_LOOPS, sorted(reached & KAFKA_LOOPS)


def test_no_module_over_400_lines_without_saying_why_at_its_top():
    long = []
    for path in sorted([*REPO.glob("services/**/*.py"), *REPO.glob("shared/**/*.py")]):
        lines = path.read_text(encoding="utf-8").count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        if lines > MAX_LINES and "on purpose" not in doc:
            long.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not long, "split these, or say at the top why they are long ('... on purpose: ...'): " + ", ".join(long)


def test_every_public_class_says_what_it_is():
    bare = []
    for path in sorted([*REPO.glob("services/**/*.py"), *REPO.glob("shared/**/*.py"), *REPO.glob("cli/**/*.py")]):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and not ast.get_docstring(node):
                bare.append(f"{path.relative_to(REPO)}: {node.name}")
    assert not bare, "give these a one-sentence docstring: " + ", ".join(bare)
