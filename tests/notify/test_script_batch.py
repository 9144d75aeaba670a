"""Lua calls coalesced into pipelines (shared/script_batch.py): each caller still gets its own
reply or its own error, whatever else shares its pipeline, and a Redis that lost its scripts
(restarted) is given them again."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from cli.stack import free_port
from shared.script_batch import ScriptBatch

# KEYS: a counter. ARGV: 1 the step; a step of "boom" fails the script.
INCR = """
if ARGV[1] == 'boom' then return redis.error_reply('boom asked for') end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


def run(redis_url: str, test) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        r = aioredis.from_url(redis_url)
        try:
            await test(r, ScriptBatch(r), r.register_script(INCR))
        finally:
            await r.aclose()

    asyncio.run(main())


def test_concurrent_calls_share_pipelines_and_each_gets_its_own_reply(fresh_redis: str) -> None:
    async def t(r, batch, script) -> None:  # type: ignore[no-untyped-def]
        replies = await asyncio.gather(*[batch.call(script, [f"n:{i % 5}"], [i]) for i in range(200)])
        assert sorted(int(x) for x in replies[-5:]) == sorted(sum(range(k, 200, 5)) for k in range(5))
        assert [int(await r.get(f"n:{k}")) for k in range(5)] == [sum(range(k, 200, 5)) for k in range(5)]
        assert batch.calls == 200 and batch.pipelines < 10

    run(fresh_redis, t)


def test_an_error_reaches_only_its_own_caller(fresh_redis: str) -> None:
    async def t(r, batch, script) -> None:  # type: ignore[no-untyped-def]
        calls = [batch.call(script, ["a"], [1]), batch.call(script, ["a"], ["boom"]), batch.call(script, ["a"], [2])]
        out = await asyncio.gather(*calls, return_exceptions=True)
        assert int(out[0]) == 1 and int(out[2]) == 3
        assert isinstance(out[1], ResponseError) and "boom asked for" in str(out[1])

    run(fresh_redis, t)


def test_scripts_lost_by_redis_are_loaded_again(fresh_redis: str) -> None:
    async def t(r, batch, script) -> None:  # type: ignore[no-untyped-def]
        assert int(await batch.call(script, ["b"], [5])) == 5
        await r.script_flush()  # what a Redis restart does to the script cache
        out = await asyncio.gather(*[batch.call(script, ["b"], [1]) for _ in range(10)])
        assert sorted(int(x) for x in out) == list(range(6, 16))

    run(fresh_redis, t)


def test_a_dead_connection_fails_every_caller_of_that_pipeline() -> None:
    async def main() -> None:
        r = aioredis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=1)  # nothing listens
        batch = ScriptBatch(r)
        script = r.register_script(INCR)
        out = await asyncio.gather(*[batch.call(script, ["c"], [1]) for _ in range(3)], return_exceptions=True)
        assert all(isinstance(x, (ConnectionError, OSError, aioredis.ConnectionError)) for x in out), out
        await r.aclose()

    asyncio.run(main())
