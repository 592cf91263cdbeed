"""Several workers on one port: both serve, a killed one is restarted, SIGTERM drains them all."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from gateway.supervisor import BACKOFF_MAX_S, restart_delay
from tests.gateway.test_server import process_config
from tests.harness import TEAM_KEY, free_port, scrape_settled, simulator, total
from tests.processes import access_lines, gateway_process, redis_server

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
CLIENTS = 4


def test_restart_backoff_doubles_and_is_capped() -> None:
    assert restart_delay(1) == 0.1
    assert restart_delay(2) == 0.2 and restart_delay(4) == 0.8
    assert restart_delay(50) == BACKOFF_MAX_S


async def worker_pids(url: str) -> set[int]:
    pids: set[int] = set()
    # A fresh connection per call: SO_REUSEPORT picks the worker per connection.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        for _ in range(40):
            async with session.get(f"{url}/healthz") as resp:
                pids.add((await resp.json())["pid"])
    return pids


async def test_two_workers_serve_and_a_killed_one_is_restarted(tmp_path: Path) -> None:
    async with simulator() as sim:
        port = free_port()
        config = tmp_path / "gateway.yaml"
        with redis_server(free_port()) as redis_url:
            config.write_text(process_config(sim.url, port, server=", workers: 2", store=redis_url))
            with gateway_process(config, port) as gw:
                await gw.wait_event("worker_started", count=2)
                await gw.wait_ready()
                await gw.wait_for(lambda: len(gw.events("serving")) == 2, what="two workers serving")
                first = {line["worker_pid"] for line in gw.events("worker_started")}
                assert await worker_pids(gw.url) == first
                assert gw.proc.pid not in first, "the supervisor itself does not serve"

                outcomes: list[str] = []
                stop = asyncio.Event()

                async def client() -> None:
                    connector = aiohttp.TCPConnector(force_close=True)
                    headers = {"Authorization": f"Bearer {TEAM_KEY}"}
                    async with aiohttp.ClientSession(connector=connector) as session:
                        while not stop.is_set():
                            try:
                                url = f"{gw.url}/v1/chat/completions"
                                async with session.post(url, json=CHAT, headers=headers) as resp:
                                    await resp.read()
                                    outcomes.append(str(resp.status))
                            except aiohttp.ClientConnectionError as exc:
                                outcomes.append(type(exc).__name__)

                clients = [asyncio.ensure_future(client()) for _ in range(CLIENTS)]
                await asyncio.sleep(0.5)
                victim = sorted(first)[0]
                os.kill(victim, signal.SIGKILL)
                exited = await gw.wait_event("worker_exited")
                assert exited[0]["worker_pid"] == victim and exited[0]["exit_code"] == -signal.SIGKILL
                await gw.wait_event("worker_started", count=3)
                (replacement,) = {line["worker_pid"] for line in gw.events("worker_started")} - first
                await gw.wait_for(lambda: len(gw.events("serving")) == 3, what="the replacement serving")
                await asyncio.sleep(1.0)
                stop.set()
                await asyncio.gather(*clients)

                failures = [o for o in outcomes if o != "200"]
                assert outcomes.count("200") > 50, outcomes[:20]
                # Only requests the dead worker held can fail (each client has one at a time), and
                # they fail as broken connections: never as an HTTP error from a live worker.
                assert len(failures) <= CLIENTS, failures
                assert all(not f.isdigit() for f in failures), failures
                served = {line["pid"] for line in access_lines(gw)}
                assert {replacement, *(first - {victim})} <= served, served

                gw.signal(signal.SIGTERM)
                assert await gw.exit_code() == 0
            stopped = gw.events("supervisor_stopped")
            assert stopped and stopped[0]["worker_exit_codes"] == [0, 0]


async def test_workers_drain_and_exit_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    async with simulator() as sim:
        port = free_port()
        config = tmp_path / "gateway.yaml"
        config.write_text(process_config(sim.url, port, server=", workers: 2", store="redis://127.0.0.1:1/0"))
        with gateway_process(config, port) as gw:
            await gw.wait_for(lambda: len(gw.events("serving")) == 2, what="two workers serving")
            gw.proc.kill()  # the supervisor only; its workers are left behind
            gone = await gw.wait_event("supervisor_gone", count=2, running=False)
            assert {line["supervisor_pid"] for line in gone} == {gw.proc.pid}
            await gw.wait_event("stopped", count=2, running=False)


async def test_one_scrape_sums_both_workers(tmp_path: Path) -> None:
    """prometheus-client multiprocess mode: whichever worker answers /metrics, it counts them all."""
    async with simulator() as sim:
        port = free_port()
        config = tmp_path / "gateway.yaml"
        with redis_server(free_port()) as redis_url:
            config.write_text(process_config(sim.url, port, server=", workers: 2", store=redis_url))
            with gateway_process(config, port) as gw:
                await gw.wait_ready()
                await gw.wait_for(lambda: len(gw.events("serving")) == 2, what="two workers serving")
                connector = aiohttp.TCPConnector(force_close=True)  # spread over both workers
                headers = {"Authorization": f"Bearer {TEAM_KEY}"}
                async with aiohttp.ClientSession(connector=connector) as session:
                    for _ in range(40):
                        async with session.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers=headers) as r:
                            assert r.status == 200
                    served_by = {line["pid"] for line in access_lines(gw)}
                    assert len(served_by) == 2, "both workers served"
                    # A worker hands its counts to the shared files every FLUSH_S (and when scraped).
                    await scrape_settled(gw.url, lambda text: total(text, "gateway_requests_total", status="200") == 40)
                    for _ in range(4):  # any worker's scrape gives the same sums
                        async with session.get(f"{gw.url}/metrics") as resp:
                            text = await resp.text()
                        assert total(text, "gateway_requests_total", status="200") == 40
                        completion = total(text, "gateway_tokens_total", kind="completion")
                        assert completion == sum(line["completion_tokens"] for line in access_lines(gw))
                gw.signal(signal.SIGTERM)
                assert await gw.exit_code() == 0
