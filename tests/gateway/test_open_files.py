"""Running out of file descriptors is the gateway's own limit: a 503 that spares the deployment."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

import aiohttp

from gateway.open_files import raise_to_hard_limit
from tests.gateway.test_upstream_answers import one_deployment
from tests.gateway.test_upstream_client import AUTH, BODY, CHAT, RawUpstream, read_request
from tests.harness import free_port, scrape, total
from tests.processes import gateway_process

#: Low enough that the requests below exhaust it; the interpreter itself holds a dozen or so.
LIMIT = 64
REQUESTS = 48


def config(upstream_url: str, port: int) -> str:
    return one_deployment(upstream_url, server=f"host: 127.0.0.1, port: {port}")


SHED = (0, "shed at accept", None)


async def ask(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str | None]:
    try:
        async with session.post(f"{url}/v1/chat/completions", json=CHAT, headers=AUTH) as resp:
            body = await resp.json()
            code = body["error"]["code"] if resp.status >= 400 else "ok"
            return resp.status, code, resp.headers.get("retry-after")
    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
        # libuv, out of descriptors at accept, accepts and closes pending connections rather than
        # spin on them: the caller sees a reset, and no request was made.
        return SHED


async def test_no_descriptor_left_is_a_503_that_neither_fails_over_nor_counts_against_the_deployment(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()

    async def held_until_released(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY))
            writer.write(BODY)
            await writer.drain()

    async with RawUpstream(held_until_released) as upstream:
        port = free_port()
        path = tmp_path / "gateway.yaml"
        path.write_text(config(upstream.url, port))
        with gateway_process(path, port, open_files=LIMIT) as gw:
            await gw.wait_ready()
            (serving,) = gw.events("serving")
            assert serving["open_files_limit"] == LIMIT
            (warning,) = gw.events("open_files_limit_low")
            assert warning["streams"] == LIMIT // 2
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                asks = [asyncio.ensure_future(ask(session, gw.url)) for _ in range(REQUESTS)]
                # The first requests hold an upstream connection each until the descriptors run out.
                await gw.wait_for(lambda: any(a.done() for a in asks), 20, "a request refused")
                release.set()
                answers = await asyncio.gather(*asks)
                refused = [a for a in answers if a[0] == 503]
                assert refused, answers
                assert set(refused) == {(503, "gateway_overloaded", "1")}
                assert answers.count((200, "ok", None)) + len(refused) + answers.count(SHED) == REQUESTS
                # The deployment was never blamed: no failure counted, no breaker, no cooldown.
                assert await ask(session, gw.url) == (200, "ok", None)
            metrics = await scrape(gw.url)
    assert total(metrics, "gateway_upstream_errors_total") == 0
    assert total(metrics, "gateway_requests_total", status="503") == len(refused)


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # a common default soft limit
    try:
        assert raise_to_hard_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
