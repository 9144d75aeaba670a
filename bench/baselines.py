"""The baselines each Pantau stage is compared with: the same I/O, none of the work.

- `http PORT`: uvicorn + FastAPI with the gateway's server settings (uvloop, httptools, no
  access log), answering POST /v1/reports with 202 after reading the body, and nothing
  else: the HTTP ceiling of this machine; and POST /v1/reports:batch with 200 after parsing
  the body and validating each report as the gateway does (shared.schemas.validate_obj),
  answering one result per report: the gateway's batch work without Redis or Kafka.
- `validate --n N`: the validator's per-message work alone, in a loop over N raw reports
  already in memory: parse and validate (shared.schemas.validate_json) and build the
  enriched value for reports.v1 (shared.schemas.enriched). No Kafka, no Redis.
- `pipe ...`: an aiokafka consume → produce loop with the validator's client settings
  (getmany of up to 2,000, produce with acks=all, await the acks, commit): no validation, no
  Redis. It prints one JSON line with what it measured.
- `chain ...`: the pipeline's I/O skeleton for the end-to-end latency: uvicorn + FastAPI
  taking POST /v1/reports and answering 202 after producing the body (acks=all) to topic A;
  a consumer of A producing each message to topic B (as scoring turns a report into a score
  update); a consumer of B POSTing a small JSON to the webhook receiver for each severity-5
  report (as notify pages; the steady day's severity 1-3 reports page nobody).
  The services' Kafka client settings, no validation, no state, no Redis, one process.
- `consume ...`: a raw aiokafka consumer in a group (getmany + json decode and a dict count
  per (region, category) per message + commit per batch): the ceiling of any consumer of the
  same workload on this machine.
- `post ...`: notify's HTTP client alone (aiohttp, services.notify.channels.HttpPool) POSTing
  webhook-sized bodies to a receiver with a fixed number in flight: what the delivery stage
  could do with no Redis and no Kafka.

Each runs as its own process, as the services they stand for do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

ONE = orjson.dumps({"event_id": "bench-00000000", "status": "accepted"})


def http_app() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.post("/v1/reports")
    async def one(request: Request) -> Response:
        await request.body()
        return Response(ONE, status_code=202, media_type="application/json")

    @app.post("/v1/reports:batch")
    async def many(request: Request) -> Response:
        from shared.schemas import validate_obj

        doc = orjson.loads(await request.body())
        results = []
        for item in doc["reports"]:
            report, errors = validate_obj(item)
            results.append({"event_id": item.get("event_id"), "status": "accepted"} if report is not None
                           else {"event_id": item.get("event_id"), "status": "rejected", "errors": errors})
        return Response(orjson.dumps({"results": results}), media_type="application/json")

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


async def chain(port: int, bootstrap: str, topic_a: str, topic_b: str, group: str, receiver: str) -> None:
    """Serve the skeleton until SIGTERM (see the module docstring)."""
    import signal

    import uvicorn
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from shared.kafka import CONSUMER_DEFAULTS, producer_settings

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_settings(10))
    await producer.start()
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.post("/v1/reports")
    async def one(request: Request) -> Response:
        body = await request.body()
        report = orjson.loads(body)
        await (await producer.send(topic_a, body, key=report["region_code"].encode()))
        return Response(ONE, status_code=202, media_type="application/json")

    async def hop(source: str, forward) -> None:  # type: ignore[no-untyped-def]
        consumer = AIOKafkaConsumer(source, bootstrap_servers=bootstrap, group_id=f"{group}-{source}",
                                    **CONSUMER_DEFAULTS)
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=2000)
                if not batches:
                    continue
                await asyncio.gather(*[forward(m) for ms in batches.values() for m in ms])
                await consumer.commit({tp: ms[-1].offset + 1 for tp, ms in batches.items()})
        finally:
            await consumer.stop()

    async def to_b(m) -> None:  # type: ignore[no-untyped-def]
        await (await producer.send(topic_b, m.value, key=m.key))

    # notify's own HTTP client, so the baseline pays what notify pays.
    from services.notify.channels import HttpPool

    http = HttpPool(64)

    async def page(m) -> None:  # type: ignore[no-untyped-def]
        r = orjson.loads(m.value)
        if r.get("severity", 5) < 5:  # as in the pipeline's steady day, only severity 5 pages
            return
        await http.post(receiver, content=orjson.dumps({
            "status": "triggered", "region_code": r["region_code"], "category": r["category"],
            "report_ids": [r["event_id"]]}), headers={"Content-Type": "application/json"}, timeout=30)

    class Server(uvicorn.Server):
        def capture_signals(self):  # type: ignore[no-untyped-def]  # SIGTERM is handled below
            return contextlib.nullcontext()

    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                   http="httptools", lifespan="off"))
    hops = [asyncio.create_task(hop(topic_a, to_b)), asyncio.create_task(hop(topic_b, page))]
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: setattr(server, "should_exit", True))
    try:
        await server.serve()
    finally:
        for t in hops:
            t.cancel()
        await asyncio.gather(*hops, return_exceptions=True)
        await http.aclose()
        await producer.stop()


async def consume(bootstrap: str, topic: str, group: str, n: int, timeout_s: float) -> dict:
    """Read `n` messages of `topic` in a group, decoding each and counting it per (region,
    category) in a dict (the least state any scorer keeps); timed from the first batch."""
    from aiokafka import AIOKafkaConsumer

    from shared.kafka import CONSUMER_DEFAULTS

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, **CONSUMER_DEFAULTS)
    await consumer.start()
    counts: dict[tuple[str, str], int] = {}
    done, first_n, t_first, cpu_first = 0, 0, 0.0, 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while done < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200, max_records=2000)
            if not batches:
                continue
            for ms in batches.values():
                for m in ms:
                    r = orjson.loads(m.value)
                    key = (r["region_code"], r["category"])
                    counts[key] = counts.get(key, 0) + 1
                done += len(ms)
            await consumer.commit({tp: ms[-1].offset + 1 for tp, ms in batches.items()})
            if not t_first:
                t_first, first_n, cpu_first = time.perf_counter(), done, _cpu()
        elapsed = time.perf_counter() - t_first if t_first else 0.0
        cpu_s = _cpu() - cpu_first if t_first else 0.0
    finally:
        await consumer.stop()
    rate = (done - first_n) / elapsed if elapsed > 0 else 0.0
    return {"done": done, "timed": done - first_n, "elapsed_s": elapsed, "rate": rate, "complete": done >= n,
            "cpu_s": cpu_s, "peak_mb": _peak_mb(), "cells": len(counts)}


async def post(url: str, n: int, concurrency: int, body_bytes: int) -> dict:
    """POST `n` bodies of `body_bytes` to `url`, `concurrency` in flight, through notify's own
    HTTP client (services.notify.channels.HttpPool, aiohttp) of notify's pool
    size; rate from the first answer to the last."""
    from services.notify.channels import HttpPool

    body = orjson.dumps({"status": "triggered", "summary": "x" * max(0, body_bytes - 40)})
    http = HttpPool(concurrency)
    todo = iter(range(n))
    ok = 0
    t_first = 0.0
    cpu0 = _cpu()

    async def worker() -> None:
        nonlocal ok, t_first
        for _ in todo:
            r = await http.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=30)
            ok += r.status_code == 200
            if not t_first:
                t_first = time.perf_counter()

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    end = time.perf_counter()
    await http.aclose()
    # Timed like notify: from the first answer to the last, over the answers after the first.
    elapsed = end - t_first
    return {"ok": ok, "elapsed_s": elapsed, "rate": (ok - 1) / elapsed if elapsed > 0 else 0.0,
            "wall_s": end - t0, "cpu_s": _cpu() - cpu0}


def validate(n: int) -> dict:
    """The validator's work per message with no I/O: parse, validate, build the enriched value."""
    from bench import workload
    from shared.schemas import enriched, validate_json
    from shared.times import rfc3339

    values = [v for _, v in workload.raw_messages("validate", n)]
    cpu0, t0 = _cpu(), time.perf_counter()
    received = rfc3339(time.time())
    ok = 0
    for i, v in enumerate(values):
        report, _ = validate_json(v)
        if report is not None:
            enriched(report, received, f"0-{i}")
            ok += 1
    elapsed = time.perf_counter() - t0
    return {"done": ok, "timed": ok, "elapsed_s": elapsed, "rate": ok / elapsed if elapsed > 0 else 0.0,
            "complete": ok == n, "cpu_s": _cpu() - cpu0}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
    c = sub.add_parser("chain")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic-a", required=True)
    c.add_argument("--topic-b", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--receiver", required=True)
    k = sub.add_parser("consume")
    k.add_argument("--bootstrap", required=True)
    k.add_argument("--topic", required=True)
    k.add_argument("--group", required=True)
    k.add_argument("--n", type=int, required=True)
    k.add_argument("--timeout", type=float, default=120)
    v = sub.add_parser("validate")
    v.add_argument("--n", type=int, required=True)
    q = sub.add_parser("post")
    q.add_argument("--url", required=True)
    q.add_argument("--n", type=int, required=True)
    q.add_argument("--concurrency", type=int, required=True)
    q.add_argument("--body-bytes", type=int, default=700)
    args = ap.parse_args(argv)
    if args.what == "http":
        serve_http(args.port)
        return 0
    if args.what == "validate":
        print(orjson.dumps(validate(args.n)).decode(), flush=True)
        return 0
    import uvloop

    if args.what == "chain":
        uvloop.run(chain(args.port, args.bootstrap, args.topic_a, args.topic_b, args.group, args.receiver))
        return 0
    if args.what == "consume":
        out = uvloop.run(consume(args.bootstrap, args.topic, args.group, args.n, args.timeout))
    elif args.what == "post":
        out = uvloop.run(post(args.url, args.n, args.concurrency, args.body_bytes))
    else:
        out = uvloop.run(pipe(args.bootstrap, args.source, args.dest, args.group, args.n, args.timeout))
    print(orjson.dumps(out).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
