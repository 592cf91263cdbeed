"""Live reload on SIGHUP: new keys work without a restart, a broken file changes nothing."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp

from gateway.app import RUNTIME, Runtime, build_app
from gateway.config import Config
from gateway.exchange import Exchange
from gateway.plugin import Plugin
from gateway.reload import ConfigFile, reload
from gateway.server import make_runner
from gateway.simulator import SimulatorConfig
from plugins import default_plugins
from tests.gateway.test_server import REPLY, process_config, stream_until_done
from tests.harness import SIM_KEY, TEAM_KEY, free_port, serve_app, simulator
from tests.processes import gateway_process

NEW_KEY = "team-b-added-by-reload-0003"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def chat_status(url: str, key: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        return resp.status


async def test_sighup_adds_a_key_and_a_broken_file_keeps_the_old_config(tmp_path: Path) -> None:
    async with simulator() as sim:
        port = free_port()
        config = tmp_path / "gateway.yaml"
        original = process_config(sim.url, port)
        config.write_text(original)
        with gateway_process(config, port) as gw:
            await gw.wait_ready()
            assert await chat_status(gw.url, NEW_KEY) == 401

            config.write_text(original + f"  team-b: {{keys: [{NEW_KEY}], limits: {{rpm: 5}}}}\n")
            gw.signal(signal.SIGHUP)
            await gw.wait_event("config_reloaded")
            assert await chat_status(gw.url, NEW_KEY) == 200
            assert await chat_status(gw.url, TEAM_KEY) == 200

            # Two mistakes at once: both are reported, and nothing changes.
            broken = original.replace("models:\n  m:", "models:\n  m2:").replace("teams:", "teams:\n  x: {keyz: []}")
            config.write_text(broken + f"  team-b: {{keys: [{NEW_KEY}]}}\n")
            gw.signal(signal.SIGHUP)
            (failed,) = await gw.wait_event("config_reload_failed")
            errors = "\n".join(failed["errors"])
            assert "teams.x.keyz: unknown key" in errors and "teams.x.keys: is required" in errors, errors
            assert failed["level"] == "error"
            assert await chat_status(gw.url, NEW_KEY) == 200
            assert await chat_status(gw.url, TEAM_KEY) == 200

            # A port change needs a restart: it is logged as ignored, the rest applies.
            config.write_text(original.replace(f"port: {port}", f"port: {port + 1}"))
            gw.signal(signal.SIGHUP)
            (ignored,) = await gw.wait_event("config_reload_ignored")
            assert ignored["keys"] == {"port": {"running": port, "file": port + 1}}
            await gw.wait_event("config_reloaded", count=2)
            assert await chat_status(gw.url, NEW_KEY) == 401
            gw.signal(signal.SIGTERM)
            assert await gw.exit_code() == 0
        for key in (NEW_KEY, TEAM_KEY, SIM_KEY):
            assert key not in gw.text(), "keys, the team's or the upstream's, must never be logged"


class Recorder(Plugin):
    """Records its lifecycle, so a test can see when a generation's plugins close."""

    name = "recorder"

    def __init__(self, journal: list[str], label: str) -> None:
        self.journal, self.label = journal, label

    async def start(self) -> None:
        self.journal.append(f"start {self.label}")

    async def close(self) -> None:
        self.journal.append(f"close {self.label}")

    async def completed(self, exchange: Exchange) -> None:
        self.journal.append(f"completed {self.label}")


async def test_a_reload_closes_the_old_plugins_only_after_the_requests_using_them(tmp_path: Path) -> None:
    journal: list[str] = []

    def factory(config: Config, runtime: Runtime) -> list[Plugin]:
        return [*default_plugins(config, runtime), Recorder(journal, f"gen{len(journal)}")]

    async with simulator(SimulatorConfig(latency_per_token_s=0.05, reply=REPLY)) as sim:
        path = tmp_path / "gateway.yaml"
        path.write_text(process_config(sim.url, 0))
        source = ConfigFile(str(path))
        cfg = source.load()
        app = build_app(cfg, factory)
        async with serve_app(app, make_runner(app, cfg)) as gw, aiohttp.ClientSession() as session:
            started = asyncio.Event()
            stream = asyncio.ensure_future(stream_until_done(session, gw.url, started))
            await started.wait()
            assert await reload(app[RUNTIME], source)
            await asyncio.sleep(0.1)
            assert journal == ["start gen0", "start gen1"], "the old generation must outlive its stream"
            assert b"[DONE]" in await stream
            await asyncio.sleep(0.05)
            assert journal == ["start gen0", "start gen1", "completed gen0", "close gen0"]
        assert journal[-1] == "close gen1"
