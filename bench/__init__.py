"""Pantau's throughput benchmarks: each pipeline stage measured beside a baseline that does
the same I/O and none of the work, in the same run on the same machine.

`python -m bench` runs every stage; `--stage ingest` picks some; `--quick` is a smoke run.
A stage is a module with `run(profile, ctx) -> list[Row]`, registered in `bench.__main__`.
"""
