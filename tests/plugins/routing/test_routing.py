"""Routing across a pool: failover on 429/5xx, shared cooldowns, breakers, weights, pinning."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import aiohttp
import openai
import pytest

from gateway.simulator import SimulatorConfig
from tests.harness import SIM_KEY, TEAM_KEY, Served, gateway, sim_fault, sim_requests, simulator
from tests.redis_servers import RedisServer

MESSAGES: Any = [{"role": "user", "content": "hi"}]


def pool_config(
    sim_url: str,
    *,
    weights: tuple[float, float] = (1, 1),
    priorities: tuple[int, int] = (0, 1),
    store: str = "memory://",
    routing: str = "{sync_ms: 50}",
    limits_a: str = "{}",
) -> str:
    return f"""
store: {{url: "{store}"}}
routing: {routing}
deployments:
  - {{name: a, dialect: openai, url: "{sim_url}/v1", model: model-a, api_key: {SIM_KEY},
      priority: {priorities[0]}, weight: {weights[0]}, limits: {limits_a}}}
  - {{name: b, dialect: azure, url: "{sim_url}", deployment: model-b, api_key: {SIM_KEY},
      priority: {priorities[1]}, weight: {weights[1]}}}
models:
  pool: {{deployments: [a, b]}}
teams:
  team-a: {{keys: [{TEAM_KEY}]}}
"""


def served_by(recorded: list[dict[str, Any]]) -> collections.Counter[str]:
    """Which deployment each recorded upstream request went to."""
    return collections.Counter("a" if r["path"].startswith("/v1/") else "b" for r in recorded)


async def _chat(gw: Served, model: str = "pool", n: int = 1, concurrency: int = 1) -> list[int]:
    async with aiohttp.ClientSession() as session:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> int:
            async with (
                gate,
                session.post(
                    f"{gw.url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {TEAM_KEY}"},
                    json={"model": model, "messages": MESSAGES},
                ) as resp,
            ):
                await resp.read()
                return resp.status

        return list(await asyncio.gather(*(one() for _ in range(n))))


async def test_429_fails_over_and_cools_the_deployment(sim: Served) -> None:
    await sim_fault(sim, match="model-a", status=429, retry_after_ms=2000, count=None)
    async with gateway(pool_config(sim.url)) as gw:
        statuses = await _chat(gw, n=50)
    assert statuses == [200] * 50
    counts = served_by(await sim_requests(sim))
    assert counts["a"] == 1  # one 429, then skipped for the whole cooldown
    assert counts["b"] == 50


async def test_cooldown_is_shared_by_replicas(sim: Served, redis_server: RedisServer) -> None:
    await sim_fault(sim, match="model-a", status=429, retry_after_ms=5000, count=None)
    # A fresh key prefix per run is not needed: the cooldown is the point, and it expires.
    config = pool_config(sim.url, store=redis_server.url, routing="{sync_ms: 50}")
    async with gateway(config) as first, gateway(config) as second:
        assert await _chat(first) == [200]
        assert served_by(await sim_requests(sim)) == {"a": 1, "b": 1}
        await asyncio.sleep(0.2)  # a few of the replicas' sync intervals
        assert await _chat(second, n=10) == [200] * 10
    assert served_by(await sim_requests(sim)) == {"a": 1, "b": 11}


async def test_breaker_opens_then_one_probe_then_traffic_returns(sim: Served) -> None:
    await sim_fault(sim, match="model-a", status=500, count=3)
    config = pool_config(sim.url, routing="{breaker: {failures: 3, open_s: 0.5}}")
    async with gateway(config) as gw:
        assert await _chat(gw, n=3) == [200] * 3  # each 500 failed over to b
        assert served_by(await sim_requests(sim)) == {"a": 3, "b": 3}
        assert await _chat(gw, n=5) == [200] * 5  # open: a is skipped
        assert served_by(await sim_requests(sim)) == {"a": 3, "b": 8}
        await asyncio.sleep(0.6)
        assert await _chat(gw, n=5, concurrency=5) == [200] * 5
        after = served_by(await sim_requests(sim))
        # Half-open: exactly one concurrent request probed a; the others went to b.
        assert after["a"] == 4 and after["b"] == 12
        assert await _chat(gw, n=3) == [200] * 3  # the probe succeeded: a is back (priority 0)
    assert served_by(await sim_requests(sim))["a"] == 7


async def test_a_stream_that_dies_after_its_first_chunk_is_not_retried(sim: Served) -> None:
    await sim_fault(sim, match="model-a", kind="drop_after_chunks", chunks=1)
    async with gateway(pool_config(sim.url)) as gw, aiohttp.ClientSession() as session:
        async with session.post(
            f"{gw.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {TEAM_KEY}"},
            json={"model": "pool", "messages": MESSAGES, "stream": True},
        ) as resp:
            assert resp.status == 200
            body = await resp.read()
    assert b"[DONE]" not in body
    assert served_by(await sim_requests(sim)) == {"a": 1}


async def test_weights_split_the_traffic() -> None:
    async with simulator() as sim, gateway(pool_config(sim.url, weights=(3, 1), priorities=(0, 0))) as gw:
        assert await _chat(gw, n=1000, concurrency=20) == [200] * 1000
        counts = served_by(await sim_requests(sim))
    assert 700 <= counts["a"] <= 800, counts  # 75% ± 5%
    assert counts["a"] + counts["b"] == 1000


async def test_pool_exhausted_answers_429_with_the_earliest_recovery(sim: Served) -> None:
    await sim_fault(sim, match="model-a", status=429, retry_after_ms=3000, count=None)
    await sim_fault(sim, match="model-b", status=429, retry_after_ms=6000, count=None)
    async with gateway(pool_config(sim.url)) as gw:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0)
        async with client:
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model="pool", messages=MESSAGES)
            assert len(await sim_requests(sim)) == 2
            with pytest.raises(openai.RateLimitError) as err:
                await client.chat.completions.create(model="pool", messages=MESSAGES)
    assert len(await sim_requests(sim)) == 2  # answered by the gateway: nobody upstream was asked
    headers = err.value.response.headers
    assert 2500 <= int(headers["retry-after-ms"]) <= 3000
    assert headers["retry-after"] == "3"
    assert "at its upstream rate limit" in err.value.message


async def test_pinned_deployment_gets_no_failover(sim: Served) -> None:
    await sim_fault(sim, match="model-a", status=429, retry_after_ms=1000)
    async with gateway(pool_config(sim.url)) as gw:
        assert await _chat(gw, model="a") == [429]
    assert served_by(await sim_requests(sim)) == {"a": 1}


async def test_known_capacity_is_skipped_when_full(sim: Served) -> None:
    async with gateway(pool_config(sim.url, limits_a="{rpm: 3}")) as gw:
        assert await _chat(gw, n=6) == [200] * 6
    assert served_by(await sim_requests(sim)) == {"a": 3, "b": 3}


async def test_least_utilized_prefers_the_most_headroom() -> None:
    async with simulator(SimulatorConfig(tpm=100_000)) as sim:
        config = pool_config(sim.url, priorities=(0, 0), routing="{strategy: least-utilized}")
        async with gateway(config) as gw:
            await _chat(gw, model="b", n=1)  # b reports its remaining tokens
            await _chat(gw, model="a", n=5)  # a reports less remaining than b
            await _chat(gw, n=1)
            assert served_by(await sim_requests(sim))["b"] == 2  # the most headroom first
            await _chat(gw, n=9)
            after = served_by(await sim_requests(sim))
    # Each request went where the most tokens remained, so the two ended level.
    assert abs(after["a"] - after["b"]) <= 1, after


async def test_routing_cost_nothing_when_the_store_is_down(sim: Served) -> None:
    """A dead Redis leaves routing on each replica's own view; requests still succeed quickly."""
    from tests.harness import free_port

    config = pool_config(sim.url, store=f"redis://127.0.0.1:{free_port()}/0")
    async with gateway(config) as gw:
        started = time.monotonic()
        assert await _chat(gw, n=10) == [200] * 10
    assert time.monotonic() - started < 5
