"""Real servers for tests: the simulator as upstream, and the gateway on a loopback port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from gateway import config as config_module
from gateway.app import RUNTIME, PluginFactory, Runtime, build_app
from gateway.server import make_runner
from gateway.simulator import SimulatorConfig, build_simulator_app
from plugins import default_plugins

SIM_KEY = "sim-key"
TEAM_KEY = "team-a-secret-key-0001"
OTHER_TEAM_KEY = "team-b-secret-key-0002"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    url: str
    runner: web.AppRunner

    @property
    def app(self) -> web.Application:
        return self.runner.app  # type: ignore[return-value]

    @property
    def runtime(self) -> Runtime:
        return self.app[RUNTIME]


@asynccontextmanager
async def serve_app(app: web.Application, runner: web.AppRunner | None = None) -> AsyncIterator[Served]:
    runner = runner or web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield Served(f"http://127.0.0.1:{port}", runner)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def simulator(config: SimulatorConfig | None = None) -> AsyncIterator[Served]:
    async with serve_app(build_simulator_app(config or SimulatorConfig())) as served:
        yield served


@asynccontextmanager
async def gateway(
    config_text: str, environ: dict[str, str] | None = None, plugin_factory: PluginFactory = default_plugins
) -> AsyncIterator[Served]:
    cfg = config_module.parse(config_text, environ=environ or {})
    app = build_app(cfg, plugin_factory)
    async with serve_app(app, make_runner(app, cfg)) as served:
        yield served


def matrix_config(sim_url: str, *, extra: str = "", max_body_bytes: int = 1048576, foundry_extra: str = "drop") -> str:
    """One deployment per dialect on the simulator, a model for each, and two teams."""
    return f"""
server: {{max_body_bytes: {max_body_bytes}}}
deployments:
  - name: dep-openai
    dialect: openai
    url: {sim_url}/v1
    model: gpt-4o-2024-08-06
    api_key: {SIM_KEY}
  - name: dep-azure
    dialect: azure
    url: {sim_url}
    deployment: gpt-4o-east
    api_version: "2024-10-21"
    api_key: {SIM_KEY}
  - name: dep-azure-old
    dialect: azure
    url: {sim_url}
    deployment: gpt-4o-legacy
    api_version: "2024-06-01"
    api_key: {SIM_KEY}
  - name: dep-foundry
    dialect: foundry
    url: {sim_url}/models
    model: Llama-3.3-70B-Instruct
    model_deployment: llama-blue
    api_version: "2024-05-01-preview"
    api_key: {SIM_KEY}
    extra_parameters: {foundry_extra}
{extra}
models:
  m-openai: {{deployments: [dep-openai]}}
  m-azure: {{deployments: [dep-azure]}}
  m-azure-old: {{deployments: [dep-azure-old]}}
  m-foundry: {{deployments: [dep-foundry]}}
teams:
  team-a:
    keys: [{TEAM_KEY}]
  team-b:
    keys: ["sha256:{_sha(OTHER_TEAM_KEY)}"]
    models: [m-openai]
"""


def _sha(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


async def sim_requests(sim: Served) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{sim.url}/_sim/requests") as resp:
        data: list[dict[str, Any]] = await resp.json()
        return data


async def sim_clear(sim: Served) -> None:
    async with aiohttp.ClientSession() as session:
        await session.delete(f"{sim.url}/_sim/requests")
        await session.delete(f"{sim.url}/_sim/faults")


async def sim_fault(sim: Served, **fault: Any) -> None:
    fault.setdefault("count", 1)
    async with aiohttp.ClientSession() as session, session.post(f"{sim.url}/_sim/faults", json=fault) as resp:
        assert resp.status < 300, await resp.text()


async def scrape(url: str) -> str:
    """The text of ``{url}/metrics`` (``url`` is a gateway's, or its metrics port's)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


async def scrape_settled(url: str, settled: Callable[[str], bool], timeout_s: float = 5.0) -> str:
    """A scrape once ``settled`` holds for it, or the last one after ``timeout_s``.

    A request's series are written after its last byte went out, so a client that scrapes at
    once can be a moment ahead of them (across processes, with no ordering to rely on).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        text = await scrape(url)
        if settled(text) or time.monotonic() > deadline:
            return text
        await asyncio.sleep(0.02)


def samples(text: str, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` (e.g. ``gateway_requests_total``) whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    ]


def total(text: str, name: str, **labels: str) -> float:
    return sum(value for _, value in samples(text, name, **labels))
