"""Multiprocess mode: two gateway processes sharing PROMETHEUS_MULTIPROC_DIR scrape as one.

The worker supervisor forks its workers with the variable set; here two ``gateway run``
processes on two ports stand in for two workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import aiohttp

from gateway.metrics import worker_exited
from tests.harness import TEAM_KEY, Served, free_port, matrix_config, scrape, scrape_settled, sim_fault, total

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def processes(config: Path, directory: Path, count: int) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    started: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "gateway", "run", "--config", str(config), "--port", str(port)]
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append((proc, f"http://127.0.0.1:{port}"))
        yield started
    finally:
        for proc, _ in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def until_ready(url: str) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, f"{url} never became ready"
            await asyncio.sleep(0.1)


def _recorded(text: str, count: int) -> bool:
    return total(text, "gateway_request_duration_seconds_count", deployment="dep-openai") == count


async def test_a_scrape_of_either_process_sums_both(sim: Served, tmp_path: Path) -> None:
    directory = tmp_path / "prometheus"
    directory.mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(matrix_config(sim.url))
    body = {"model": "m-openai", "messages": [{"role": "user", "content": "hello"}]}
    auth = {"Authorization": f"Bearer {TEAM_KEY}"}
    with processes(config, directory, 2) as ((first, first_url), (_, second_url)):
        await asyncio.gather(until_ready(first_url), until_ready(second_url))
        async with aiohttp.ClientSession() as session:
            for url in (first_url, second_url):
                async with session.post(f"{url}/v1/chat/completions", json=body, headers=auth) as resp:
                    assert resp.status == 200
            both_recorded = partial(_recorded, count=2)
            for url in (first_url, second_url):
                text = await scrape_settled(url, both_recorded)
                assert total(text, "gateway_requests_total", status="200") == 2
                assert total(text, "gateway_tokens_total", kind="completion", source="reported") == 10
                assert total(text, "gateway_request_duration_seconds_count", deployment="dep-openai") == 2

            # A stream held open in the first process is in flight as seen from the second.
            await sim_fault(sim, match="/v1/chat/completions", kind="pause", pause_s=5)
            resp = await session.post(f"{first_url}/v1/chat/completions", json={**body, "stream": True}, headers=auth)
            await resp.content.readuntil(b"\n\n")
            await scrape_settled(second_url, lambda t: total(t, "gateway_in_flight_requests") == 1)
            # The first process dies mid-request: its in-flight count goes once it is reported
            # dead; its counters stay, so totals never go backwards.
            first.kill()
            first.wait()
            resp.close()
            worker_exited(first.pid, str(directory))
            text = await scrape(second_url)
            assert total(text, "gateway_in_flight_requests") == 0
            assert total(text, "gateway_requests_total", status="200") == 2


async def test_a_process_that_drains_leaves_every_count_in_the_files(sim: Served, tmp_path: Path) -> None:
    """Counts reach the shared files in batches (every FLUSH_S and before a scrape); a process
    stopped with SIGTERM right after its requests writes the last batch as it drains."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    directory = tmp_path / "prometheus"
    directory.mkdir()
    config = tmp_path / "gateway.yaml"
    config.write_text(matrix_config(sim.url))
    body = {"model": "m-openai", "messages": [{"role": "user", "content": "hello"}]}
    with processes(config, directory, 1) as [(proc, url)]:
        await until_ready(url)
        async with aiohttp.ClientSession() as session:
            for _ in range(5):
                async with session.post(
                    f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {TEAM_KEY}"}
                ) as resp:
                    assert resp.status == 200
        proc.send_signal(signal.SIGTERM)  # at once: well within one flush interval
        assert proc.wait(timeout=10) == 0
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(directory))  # type: ignore[no-untyped-call]
    text = generate_latest(registry).decode()
    assert total(text, "gateway_requests_total", status="200") == 5
    assert total(text, "gateway_tokens_total", kind="completion", source="reported") == 25


def test_multiprocess_mode_holds_when_the_variable_is_set_after_import(tmp_path: Path) -> None:
    """A supervisor may import the gateway (and so prometheus_client) before it sets the variable
    and forks: the workers' values must still go to the shared directory."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    script = (
        "import os, sys\n"
        "from gateway.metrics import Metrics\n"
        "os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]\n"
        "Metrics().store_error()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"} | {"PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, env=env, check=True, timeout=30)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, str(tmp_path))  # type: ignore[no-untyped-call]
    assert b"gateway_store_errors_total 1.0" in generate_latest(registry)
