"""`python -m bench.readme_faults`: copy the fault suite's latest tables (bench/results/faults.md
and power-cut.md, which `make test-faults` has just written) into README.md, between the
markers that hold them, with the commit they ran on, so the README never shows a table from
older code than it says. `make test-faults` runs it after the suite, passed or failed."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from bench.report import git_commit

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
BLOCKS = {"faults": RESULTS / "faults.md", "power-cut": RESULTS / "power-cut.md"}


def block(name: str, results: str, commit: str) -> str:
    """What goes between the markers: the run's own line (when, load, rate), the commit, the table."""
    lines = results.splitlines()
    table = [line for line in lines if line.startswith("|")]
    about = next((line for line in lines if line and not line.startswith(("#", "|"))), "").rstrip(".")
    about = about.removeprefix("Fault suite, ")
    if "commit" not in about:  # the power-cut file names none: the commit make test-faults ran on
        about += f"; commit {commit}"
    return "\n".join([f"Latest run ({about}; `bench/results/{name}.md`):", "", *table])


def rewrite(readme: str, name: str, content: str) -> str:
    begin, end = f"<!-- {name}: written by make test-faults -->", f"<!-- /{name} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {begin} ... {end} block")
    return pattern.sub(lambda _m: f"{begin}\n{content}\n{end}", readme)


def main() -> int:
    readme_path = REPO / "README.md"
    readme = readme_path.read_text()
    commit = git_commit(REPO)
    for name, path in BLOCKS.items():
        if not path.exists():
            print(f"readme_faults: {path} missing; its README table left as it was")
            continue
        readme = rewrite(readme, name, block(name, path.read_text(), commit))
    readme_path.write_text(readme)
    print(f"readme_faults: README.md fault tables now from commit {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
