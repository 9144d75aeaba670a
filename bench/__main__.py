"""`python -m bench [--quick] [--stage NAME ...] [--compare REF]`: run the stage benchmarks, print
the table and write it with the machine's description to bench/results/latest.md (quick runs
to bench/results/quick.md.tmp, which git ignores). With --compare, each stage also runs at
once on commit REF (bench/compare.py) and a second table gives this commit's numbers as
ratios to REF's."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from bench import broker, compare, deliveries, durable, ingest, pipeline, scaling, scoring
from bench.context import FULL, QUICK, Context
from bench.report import document, load_average, table

# Stage name → module with run(ctx) -> list[Row], in the order `python -m bench` runs them.
STAGES = {
    "broker": broker,
    "ingest": ingest,
    "scoring": scoring,
    "scaling": scaling,
    "deliveries": deliveries,
    "pipeline": pipeline,
    "durable": durable,
}

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small counts and short runs: a smoke test")
    ap.add_argument("--stage", action="append", choices=sorted(STAGES), help="run only this stage (repeatable)")
    ap.add_argument("--out", type=Path, help="results file (default bench/results/latest.md, or "
                                             "bench/results/quick.md.tmp with --quick)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="sample the service under test with py-spy and write profiles to DIR")
    ap.add_argument("--keep", action="store_true", help="keep the stacks' temporary folders and logs")
    ap.add_argument("--compare", metavar="REF", help="also run each stage on commit REF and print ratios to it")
    args = ap.parse_args(argv)
    ref = None
    if args.compare:
        try:
            ref = compare.resolve(REPO, args.compare)
        except ValueError as e:
            ap.error(str(e))

    ctx = Context(QUICK if args.quick else FULL, profile_dir=args.profile, keep=args.keep)
    out = args.out or RESULTS / ("quick.md.tmp" if args.quick else "latest.md")
    started = time.monotonic()
    load_before = load_average()
    rows = []
    ref_rows: list[compare.RefRow] = []
    with ExitStack() as stack:
        tree = stack.enter_context(compare.checkout(REPO, ref)) if ref else None
        for name in args.stage or list(STAGES):
            ctx.log(f"stage {name} ({ctx.budget.name})")
            rows += STAGES[name].run(ctx)
            if tree is not None:  # right after, so both meet the same hour of the machine
                ref_rows += compare.run_stage(tree, name, args.quick, ctx.log)
    mode = f"{ctx.budget.name}{' (profiled: numbers are lower than usual)' if args.profile else ''}"
    text = document(rows, ctx.setup, mode, REPO, load_before)
    if ref:
        versus = compare.table(rows, ref_rows, ref[:7])
        text += f"\n## Compared with {ref[:7]} (each stage run on it right after this commit's)\n\n{versus}\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print()
    print(table(rows))
    print()
    for r in rows:
        for n in r.notes:
            print(f"- {r.stage}: {n}")
    if ref:
        print(f"\ncompared with {ref[:7]}:\n\n{versus}")
    print(f"\nbench: done in {time.monotonic() - started:.0f} s; written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
