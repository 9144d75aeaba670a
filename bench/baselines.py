"""The baselines each Pantau stage is compared with: the same I/O, none of the work.

- `http PORT`: uvicorn + FastAPI with the gateway's server settings (uvloop, httptools, no
  access log), answering POST /v1/reports with 202 and /v1/reports:batch with 200 after
  reading the body, and nothing else: the HTTP ceiling of this machine.
- `pipe ...`: an aiokafka consume → produce loop with the validator's client settings
  (getmany of up to 2,000, produce with acks=all, await the acks, commit): no validation, no
  Redis. It prints one JSON line with what it measured.

Both run as their own process, as the services they stand for do.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

ONE = orjson.dumps({"event_id": "bench-00000000", "status": "accepted"})


def http_app(batch_size: int = 500) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)
    # As many bytes as the gateway's answer to a full batch, built once.
    batch = orjson.dumps({"results": [{"event_id": f"bench-{i:08d}", "status": "accepted"}
                                      for i in range(batch_size)]})

    @app.post("/v1/reports")
    async def one(request: Request) -> Response:
        await request.body()
        return Response(ONE, status_code=202, media_type="application/json")

    @app.post("/v1/reports:batch")
    async def many(request: Request) -> Response:
        await request.body()
        return Response(batch, media_type="application/json")

    return app


def serve_http(port: int) -> None:
    import uvicorn

    uvicorn.run(http_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False,
                loop="uvloop", http="httptools")


async def pipe(bootstrap: str, source: str, dest: str, group: str, n: int, timeout_s: float) -> dict:
    """Copy `n` messages from `source` to `dest`; the rate counts from the first batch acked
    (so the group join and the first fetch are left out, as for the validator)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from shared.kafka import CONSUMER_DEFAULTS, producer_settings

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings(10))
    consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=group,
                                max_partition_fetch_bytes=4 << 20, **CONSUMER_DEFAULTS)
    await producer.start()
    await consumer.start()
    done, first_n, t_first, cpu_first = 0, 0, 0.0, 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while done < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not batches:
                continue
            futs = [await producer.send(dest, m.value, key=m.key) for ms in batches.values() for m in ms]
            await asyncio.gather(*futs)
            await consumer.commit({tp: ms[-1].offset + 1 for tp, ms in batches.items()})
            done += len(futs)
            if not t_first:
                t_first, first_n, cpu_first = time.perf_counter(), done, _cpu()
        elapsed = time.perf_counter() - t_first if t_first else 0.0
        cpu_s = _cpu() - cpu_first if t_first else 0.0
    finally:
        await consumer.stop()
        await producer.stop()
    rate = (done - first_n) / elapsed if elapsed > 0 else 0.0
    return {"done": done, "timed": done - first_n, "elapsed_s": elapsed, "rate": rate, "complete": done >= n,
            "cpu_s": cpu_s}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.baselines")
    sub = ap.add_subparsers(dest="what", required=True)
    h = sub.add_parser("http")
    h.add_argument("port", type=int)
    p = sub.add_parser("pipe")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--dest", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args(argv)
    if args.what == "http":
        serve_http(args.port)
        return 0
    import uvloop

    out = uvloop.run(pipe(args.bootstrap, args.source, args.dest, args.group, args.n, args.timeout))
    print(orjson.dumps(out).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
