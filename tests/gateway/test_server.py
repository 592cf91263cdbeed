"""Graceful drain on SIGTERM, with `gateway run` as a real process and the simulator as upstream."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from gateway.simulator import SimulatorConfig
from tests.harness import SIM_KEY, TEAM_KEY, free_port, simulator
from tests.processes import access_lines, gateway_process

REPLY = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
STREAM = {"model": "m", "messages": [{"role": "user", "content": "count"}], "stream": True}


def process_config(sim_url: str, port: int, *, server: str = "", store: str = "memory://") -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}{server}}}
store: {{url: "{store}"}}
deployments:
  - {{name: sim, dialect: openai, url: "{sim_url}/v1", model: gpt-4o, api_key: {SIM_KEY}}}
models:
  m: {{deployments: [sim]}}
teams:
  team-a: {{keys: [{TEAM_KEY}]}}
"""


async def stream_until_done(session: aiohttp.ClientSession, url: str, started: asyncio.Event) -> bytes:
    async with session.post(
        f"{url}/v1/chat/completions", json=STREAM, headers={"Authorization": f"Bearer {TEAM_KEY}"}
    ) as resp:
        assert resp.status == 200
        body = b""
        async for chunk in resp.content.iter_any():
            body += chunk
            started.set()
        return body


async def connection_refused(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_sigterm_lets_every_stream_in_flight_finish_and_records_its_usage(tmp_path: Path) -> None:
    async with simulator(SimulatorConfig(latency_per_token_s=0.1, reply=REPLY)) as sim:
        port = free_port()
        config = tmp_path / "gateway.yaml"
        config.write_text(process_config(sim.url, port, server=", shutdown_timeout_s: 20"))
        with gateway_process(config, port) as gw:
            await gw.wait_ready()
            async with aiohttp.ClientSession() as session:
                started = [asyncio.Event() for _ in range(10)]
                streams = [asyncio.ensure_future(stream_until_done(session, gw.url, s)) for s in started]
                await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 10)
                assert not await connection_refused(port)

                gw.signal(signal.SIGTERM)
                await gw.wait_event("draining")
                assert await connection_refused(port), "a draining gateway must refuse new connections"
                assert not any(s.done() for s in streams), "the streams should still be in flight"

                bodies = await asyncio.wait_for(asyncio.gather(*streams), 20)
            assert await gw.exit_code() == 0
        for body in bodies:
            assert body.rstrip().endswith(b"data: [DONE]"), body[-200:]
            assert b"fifteen" in body
        lines = access_lines(gw)
        assert len(lines) == 10, gw.text()
        assert all(line["status"] == 200 and line["completion_tokens"] >= 15 for line in lines), lines
        events = [line["event"] for line in gw.logs]
        assert events.index("draining") < events.index("request") < events.index("stopped")


async def test_streams_past_the_shutdown_timeout_are_cut_but_still_counted(tmp_path: Path) -> None:
    async with simulator(SimulatorConfig(latency_per_token_s=0.5, reply=REPLY)) as sim:
        port = free_port()
        config = tmp_path / "gateway.yaml"
        config.write_text(process_config(sim.url, port, server=", shutdown_timeout_s: 1"))
        with gateway_process(config, port) as gw:
            await gw.wait_ready()
            async with aiohttp.ClientSession() as session:
                started = asyncio.Event()
                stream = asyncio.ensure_future(stream_until_done(session, gw.url, started))
                await asyncio.wait_for(started.wait(), 10)
                gw.signal(signal.SIGTERM)
                with pytest.raises(aiohttp.ClientPayloadError):
                    await asyncio.wait_for(stream, 10)
            assert await gw.exit_code() == 0
        (line,) = access_lines(gw)
        assert line["completion_tokens"] >= 1, line
        # Cut at shutdown_timeout_s after SIGTERM (the stream had run ~0.5 s before it), not later.
        assert 1.0 <= line["duration_ms"] / 1000 < 2.0, line
