"""The lockfiles agree with pyproject.toml, and make, CI and the Docker image install from them.

A dependency added to pyproject.toml without `make lock` would be missing from every install
(the project itself goes in with --no-deps), so these checks fail first and say what to run."""

from __future__ import annotations

import re
import tomllib

from tests.deploy import REPO

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        m = PIN.match(line.strip())
        if m:
            out[_norm(m.group(1))] = m.group(2)
    return out


def _lock(name: str) -> dict[str, str]:
    return _pins((REPO / name).read_text(encoding="utf-8").splitlines())


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_pin_of_pyproject_is_in_the_lockfile_at_the_same_version():
    project = _project()
    full, base = _lock("requirements.lock"), _lock("requirements-base.lock")
    wanted = _pins(project["dependencies"])
    for extra in ("test", "embedded"):
        wanted |= _pins(project["optional-dependencies"][extra])
    stale = {n: v for n, v in wanted.items() if full.get(n) != v}
    assert not stale, f"requirements.lock lacks {stale}: run `make lock`"
    base_wanted = _pins(project["dependencies"])
    stale = {n: v for n, v in base_wanted.items() if base.get(n) != v}
    assert not stale, f"requirements-base.lock lacks {stale}: run `make lock`"


def test_the_base_lockfile_is_the_full_one_without_the_extras():
    project = _project()
    full, base = _lock("requirements.lock"), _lock("requirements-base.lock")
    assert {n: full.get(n) for n in base} == base, "the two lockfiles disagree on a version: run `make lock`"
    extras_only = set(_pins(project["optional-dependencies"]["embedded"]))
    extras_only |= set(_pins(project["optional-dependencies"]["test"])) - set(_pins(project["dependencies"]))
    assert not extras_only & set(base), "a test or embedded package is in the image's lockfile"


def test_make_and_the_image_install_the_lockfiles_and_the_project_without_its_own_resolution():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"pip install .*--no-deps -r \$\(LOCK\)", makefile)
    assert re.search(r"pip install .*--no-deps -e \.", makefile)
    assert re.search(r"^LOCK := requirements\.lock$", makefile, re.M)
    assert re.search(r"^lock:", makefile, re.M)
    docker = (REPO / "Dockerfile").read_text(encoding="utf-8")
    runs = [line for line in docker.splitlines() if line.startswith("RUN") and "pip install" in line]
    assert any("--no-deps -r requirements-base.lock" in r for r in runs), runs
    assert any(r.rstrip().endswith("pip install --no-deps .") for r in runs), runs
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
