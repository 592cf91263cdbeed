"""Quotas end to end: gateway replicas sharing Redis, SDK retries, and the usage API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from azure.ai.inference.aio import ChatCompletionsClient
from azure.core.credentials import AzureKeyCredential

from gateway.app import Runtime
from gateway.config import Config, parse
from gateway.plugin import Plugin
from gateway.store import MemoryStore
from plugins import default_plugins
from plugins.access_log import AccessLog
from plugins.metrics import MetricsPlugin
from plugins.ratelimit import RateLimitPlugin
from plugins.routing import Router
from tests.harness import SIM_KEY, Served, free_port, gateway
from tests.processes import GatewayProcess, gateway_process
from tests.redis_servers import RedisClusterServers, RedisServer

MESSAGE = [{"role": "user", "content": "hi"}]


def replica_config(sim_url: str, store_url: str, teams: dict[str, dict[str, Any]]) -> str:
    team_yaml = "\n".join(
        f"  {name}: {{keys: [{spec['key']}], limits: {{{', '.join(f'{k}: {v}' for k, v in spec['limits'].items())}}}}}"
        for name, spec in teams.items()
    )
    return f"""
store: {{url: "{store_url}", timeout_ms: 500}}
deployments:
  - {{name: up, dialect: openai, url: "{sim_url}/v1", model: gpt-4o, api_key: {SIM_KEY}}}
models:
  gpt-4o: {{deployments: [up]}}
teams:
{team_yaml}
admin:
  keys: [admin-key-0001]
"""


@asynccontextmanager
async def replicas(config_text: str, tmp: Path, count: int = 3) -> AsyncIterator[list[str]]:
    """``count`` gateway processes on one config (each on its own port); yields their URLs."""
    with contextlib.ExitStack() as stack:
        processes: list[GatewayProcess] = []
        for n in range(count):
            port = free_port()
            path = tmp / f"replica{n}.yaml"
            path.write_text(f"server: {{port: {port}}}\n{config_text}")
            processes.append(stack.enter_context(gateway_process(path, port)))
        for process in processes:
            await process.wait_ready()
        yield [p.url for p in processes]


async def _race(urls: list[str], keys: list[str], per_key: int) -> dict[str, list[int]]:
    """``per_key`` concurrent requests for each key, spread round-robin over the replicas."""
    async with aiohttp.ClientSession() as session:

        async def one(i: int, key: str) -> int:
            async with session.post(
                f"{urls[i % len(urls)]}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}"},
                json={"model": "gpt-4o", "messages": MESSAGE, "max_tokens": 5},
            ) as resp:
                await resp.read()
                return resp.status

        results = await asyncio.gather(*(one(i, key) for key in keys for i in range(per_key)))
    return {key: list(results[n * per_key : (n + 1) * per_key]) for n, key in enumerate(keys)}


async def test_three_replicas_on_one_redis_admit_exactly_the_limit(
    sim: Served, disposable_redis: RedisServer, tmp_path: Path
) -> None:
    config = replica_config(
        sim.url, disposable_redis.url, {"research": {"key": "research-key-1", "limits": {"rpm": 20}}}
    )
    async with replicas(config, tmp_path) as urls:
        statuses = (await _race(urls, ["research-key-1"], 90))["research-key-1"]
    assert statuses.count(200) == 20
    assert statuses.count(429) == 70


async def test_three_replicas_on_a_cluster_exact_per_team(
    sim: Served, redis_cluster: RedisClusterServers, tmp_path: Path
) -> None:
    teams = {f"team{n}": {"key": f"team-{n}-key", "limits": {"rpm": 10 + n}} for n in range(4)}
    # Unique names per run: the cluster fixture is shared by the session.
    teams = {f"{name}-{time.monotonic_ns()}": spec for name, spec in teams.items()}
    config = replica_config(sim.url, redis_cluster.url, teams)
    async with replicas(config, tmp_path) as urls:
        results = await _race(urls, [spec["key"] for spec in teams.values()], 30)
    # A CROSSSLOT (or any store) error would fail open and admit all 30: exact counts rule it out.
    for spec in teams.values():
        assert results[spec["key"]].count(200) == spec["limits"]["rpm"]
        assert results[spec["key"]].count(429) == 30 - spec["limits"]["rpm"]


def short_window(window_ms: int) -> Any:
    """The real plugins, with the limiter's window shortened so a test can wait it out."""

    def factory(config: Config, runtime: Runtime) -> list[Plugin]:
        assert runtime.store is not None
        return [RateLimitPlugin(runtime.store, window_ms=window_ms), Router(config), AccessLog()]

    return factory


def single_team(sim_url: str, limits: str, store: str = "memory://") -> str:
    return replica_config(sim_url, store, {"t": {"key": "team-key-01", "limits": {}}}).replace(
        "limits: {}", f"limits: {{{limits}}}"
    )


async def test_openai_sdk_retries_after_the_honest_retry_after(sim: Served) -> None:
    async with gateway(single_team(sim.url, "rpm: 1"), plugin_factory=short_window(2000)) as gw:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="team-key-01")  # default retries
        async with client:
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGE)  # type: ignore[arg-type]
            started = time.monotonic()
            raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGE)  # type: ignore[arg-type]
            waited = time.monotonic() - started
    assert raw.http_response.status_code == 200
    # The request that succeeded was the SDK's first retry of the refused one.
    assert raw.http_response.request.headers["x-stainless-retry-count"] == "1"
    # The SDK waited for retry-after-ms (about the 2 s window), not less.
    assert 1.5 < waited < 6


async def test_azure_core_retries_after_the_honest_retry_after(sim: Served) -> None:
    async with gateway(single_team(sim.url, "rpm: 1"), plugin_factory=short_window(2000)) as gw:
        async with ChatCompletionsClient(endpoint=gw.url, credential=AzureKeyCredential("team-key-01")) as client:
            await client.complete(messages=MESSAGE, model="gpt-4o")
            started = time.monotonic()
            result = await client.complete(messages=MESSAGE, model="gpt-4o")
            waited = time.monotonic() - started
    assert result.choices[0].message.content
    assert 1.0 < waited < 6  # azure-core honours whole-second Retry-After


async def test_429_in_each_dialect_names_team_and_limit(sim: Served) -> None:
    async with gateway(single_team(sim.url, "rpm: 1")) as gw, aiohttp.ClientSession() as session:
        body = {"model": "gpt-4o", "messages": MESSAGE}
        async with session.post(
            f"{gw.url}/v1/chat/completions", headers={"Authorization": "Bearer team-key-01"}, json=body
        ) as r:
            assert r.status == 200
            assert r.headers["x-ratelimit-limit-requests"] == "1"
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
        async with session.post(
            f"{gw.url}/v1/chat/completions", headers={"Authorization": "Bearer team-key-01"}, json=body
        ) as r:
            assert r.status == 429
            error = (await r.json())["error"]
            assert error["code"] == "rate_limit_exceeded" and error["type"] == "requests"
            assert "Team 't'" in error["message"] and "rpm" in error["message"]
            assert int(r.headers["retry-after"]) >= 1 and int(r.headers["retry-after-ms"]) > 0
        async with session.post(
            f"{gw.url}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            headers={"api-key": "team-key-01"},
            json=body,
        ) as r:
            assert r.status == 429
            assert (await r.json())["error"]["code"] == "429"
            assert r.headers["x-ms-error-code"] == "429"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_token_counter_ends_at_the_reported_usage(sim: Served, redis_server: RedisServer, stream: bool) -> None:
    team = f"tok{time.monotonic_ns()}"
    config = replica_config(sim.url, redis_server.url, {team: {"key": f"{team}-key", "limits": {"tpm": 100000}}})
    reported = 0
    async with gateway(config) as gw:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=f"{team}-key", max_retries=0)
        async with client:
            for _ in range(5):
                if stream:
                    events = await client.chat.completions.create(
                        model="gpt-4o",
                        messages=MESSAGE,
                        max_tokens=50,
                        stream=True,  # type: ignore[arg-type]
                        stream_options={"include_usage": True},
                    )
                    async for chunk in events:
                        if chunk.usage:
                            reported += chunk.usage.total_tokens
                else:
                    reply = await client.chat.completions.create(model="gpt-4o", messages=MESSAGE, max_tokens=50)  # type: ignore[arg-type]
                    assert reply.usage is not None
                    reported += reply.usage.total_tokens
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{gw.url}/v1/usage", headers={"Authorization": f"Bearer {team}-key"}) as resp:
                usage = await resp.json()
    assert reported > 0
    (mine,) = usage["teams"]
    assert mine["team"] == team
    assert mine["usage"]["tpm"]["used"] == reported


async def test_usage_api_admin_sees_every_team_and_teams_only_themselves(sim: Served) -> None:
    teams = {
        "alpha": {"key": "alpha-key-1", "limits": {"rpm": 5, "tokens_per_day": 100000}},
        "beta": {"key": "beta-key-1", "limits": {"rpm": 7}},
    }
    async with gateway(replica_config(sim.url, "memory://", teams)) as gw, aiohttp.ClientSession() as session:
        await session.post(
            f"{gw.url}/v1/chat/completions",
            headers={"Authorization": "Bearer alpha-key-1"},
            json={"model": "gpt-4o", "messages": MESSAGE},
        )
        async with session.get(f"{gw.url}/v1/usage", headers={"Authorization": "Bearer alpha-key-1"}) as r:
            own = await r.json()
        async with session.get(f"{gw.url}/v1/usage?team=beta", headers={"Authorization": "Bearer alpha-key-1"}) as r:
            assert r.status == 401
        async with session.get(f"{gw.url}/v1/usage", headers={"Authorization": "Bearer admin-key-0001"}) as r:
            everyone = await r.json()
    assert [t["team"] for t in own["teams"]] == ["alpha"]
    alpha = own["teams"][0]["usage"]
    assert alpha["rpm"]["used"] == 1 and alpha["rpm"]["remaining"] == 4
    assert 0 < alpha["tokens_per_day"]["used"] < 100000
    assert {t["team"] for t in everyone["teams"]} == {"alpha", "beta"}


def test_default_plugins_put_admission_first() -> None:
    config = parse(single_team("http://127.0.0.1:9", "rpm: 1"), environ={})
    runtime = Runtime(config)
    runtime.store = MemoryStore()
    assert [type(p) for p in default_plugins(config, runtime)] == [MetricsPlugin, RateLimitPlugin, Router, AccessLog]
