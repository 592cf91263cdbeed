"""Hostile and slow clients, over raw sockets, against `gateway run` and `gateway simulate` processes.

Each check runs with both of aiohttp's request parsers: llhttp (C, the default) and the pure-Python
one (``AIOHTTP_NO_EXTENSIONS=1``), since a deployment may end up on either.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.gateway.test_server import process_config
from tests.gateway.test_streaming import canned_config
from tests.harness import TEAM_KEY, free_port, serve_app
from tests.processes import ROOT, GatewayProcess, gateway_process

HEADER_TIMEOUT_S = 1.0
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
HOP_BY_HOP = {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization"}


@dataclass
class Stack:
    gateway: GatewayProcess
    sim_url: str

    def sim_requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.sim_url}/_sim/requests", timeout=5) as resp:
            data: list[dict[str, Any]] = json.loads(resp.read())
            return data


def _wait_http(url: str, proc: subprocess.Popen[bytes] | GatewayProcess) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} never answered"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Stack]]:
    """``stacks(parser)``: a simulator process and a gateway process on that parser, started once."""
    started: dict[str, Stack] = {}
    processes: list[Any] = []

    def get(parser: str) -> Stack:
        if parser in started:
            return started[parser]
        sim_port, port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        sim = subprocess.Popen(
            [sys.executable, "-m", "gateway", "simulate", "--port", str(sim_port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(sim)
        sim_url = f"http://127.0.0.1:{sim_port}"
        _wait_http(f"{sim_url}/_sim/requests", sim)
        config = tmp_path_factory.mktemp(parser) / "gateway.yaml"
        server = f", header_timeout_s: {HEADER_TIMEOUT_S}, body_timeout_s: 1, keepalive_timeout_s: 2, max_headers: 50"
        config.write_text(process_config(sim_url, port, server=server))
        gateway = GatewayProcess(config, port, {"AIOHTTP_NO_EXTENSIONS": "1"} if parser == "python" else {})
        processes.append(gateway)
        _wait_http(f"{gateway.url}/healthz", gateway)
        started[parser] = Stack(gateway, sim_url)
        return started[parser]

    yield get
    for process in processes:
        if isinstance(process, GatewayProcess):
            process.stop()
        else:
            process.terminate()
            process.wait(timeout=10)


PARSERS = pytest.mark.parametrize("parser", ["llhttp", "python"])


def request(extra: bytes = b"", body: bytes = BODY, *, content_length: bool = True) -> bytes:
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n" % TEAM_KEY.encode()
    head += b"Content-Type: application/json\r\n"
    if content_length:
        head += b"Content-Length: %d\r\n" % len(body)
    return head + extra + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


async def exchange(port: int, data: bytes, *, within_s: float = 5) -> bytes:
    """Send ``data``, then read until the server closes the connection (or ``within_s``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        received = b""
        async with asyncio.timeout(within_s):
            while chunk := await reader.read(65536):
                received += chunk
                if b"\r\n\r\n" in received and not data.endswith(b"\r\n\r\n") and _complete(received):
                    break
        return received
    finally:
        writer.close()


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else 0


SMUGGLING = {
    "content-length and transfer-encoding": request(b"Transfer-Encoding: chunked\r\n", chunked(BODY)),
    "chunked, chunked": request(b"Transfer-Encoding: chunked, chunked\r\n", chunked(BODY), content_length=False),
    "two transfer-encoding headers": request(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", chunked(BODY), content_length=False
    ),
    "gzip, chunked": request(b"Transfer-Encoding: gzip, chunked\r\n", chunked(BODY), content_length=False),
    "an unknown coding": request(b"Transfer-Encoding: xchunked\r\n", chunked(BODY), content_length=False),
    "two content-lengths": request(b"Content-Length: 3\r\n"),
    "a space before the colon": request(b"Transfer-Encoding : chunked\r\n", chunked(BODY), content_length=False),
    "a header line over 8190 bytes": request(b"X-Big: " + b"a" * 9000 + b"\r\n"),
    "more than max_headers headers": request(b"".join(b"X-H%d: v\r\n" % i for i in range(60))),
}


@PARSERS
async def test_smuggling_and_oversized_headers_are_refused_before_the_upstream(
    stacks: Callable[[str], Stack], parser: str
) -> None:
    stack = stacks(parser)
    port = stack.gateway.port
    assert (
        status_of(await exchange(port, request(b"Transfer-Encoding: chunked\r\n", chunked(BODY), content_length=False)))
        == 200
    )
    before = len(stack.sim_requests())
    for name, data in SMUGGLING.items():
        response = await exchange(port, data)
        assert status_of(response) in (400, 431), f"{name}: {response[:300]!r}"
    assert len(stack.sim_requests()) == before, "a refused request reached the upstream"


@PARSERS
async def test_hop_by_hop_headers_and_the_ones_connection_names_are_not_forwarded(
    stacks: Callable[[str], Stack], parser: str
) -> None:
    stack = stacks(parser)
    hostile = (
        b"Connection: keep-alive, X-Secret, x-other\r\nX-Secret: s3cret\r\nX-Other: o\r\n"
        b"Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\n"
        b"Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
    )
    response = await exchange(stack.gateway.port, request(hostile))
    assert status_of(response) == 200, response[:300]
    received = stack.sim_requests()[-1]["headers"]
    leaked = (HOP_BY_HOP | {"x-secret", "x-other"}) & set(received)
    assert not leaked, f"forwarded upstream: {leaked}"
    assert "s3cret" not in json.dumps(received) and TEAM_KEY not in json.dumps(received)


async def trickle(port: int, data: bytes, gap_s: float) -> tuple[bytes, float]:
    """Send ``data`` a byte at a time; what came back and when the server closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    sender = asyncio.ensure_future(_send_slowly(writer, data, gap_s))
    try:
        received = await asyncio.wait_for(reader.read(), 10)
        return received, time.monotonic() - started
    finally:
        sender.cancel()
        writer.close()


async def _send_slowly(writer: asyncio.StreamWriter, data: bytes, gap_s: float) -> None:
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await asyncio.sleep(gap_s)
    except ConnectionError:
        pass  # the server hung up, as it should


@PARSERS
async def test_slow_clients_are_cut_off(stacks: Callable[[str], Stack], parser: str) -> None:
    port = stacks(parser).gateway.port

    async def slowloris() -> None:
        received, after = await trickle(port, request(), gap_s=0.05)  # would take ~12 s in full
        assert received.startswith(b"HTTP/1.1 408"), received
        assert HEADER_TIMEOUT_S * 0.9 <= after < HEADER_TIMEOUT_S + 1.5, after

    async def silent() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        received = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert received.startswith(b"HTTP/1.1 408") and time.monotonic() - started < HEADER_TIMEOUT_S + 1.5

    async def slow_body() -> None:
        head = request().split(b"\r\n\r\n")[0] + b"\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + BODY[:10])  # Content-Length promises more
        received = await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
        assert status_of(received) == 408 and b"request_timeout" in received, received

    async def kept_alive_then_slow() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request())
        assert status_of(await _one_response(reader)) == 200
        await asyncio.sleep(0.5)  # idle on a kept-alive connection: allowed up to keepalive_timeout_s
        started = time.monotonic()
        sender = asyncio.ensure_future(_send_slowly(writer, request(), 0.05))
        received = await asyncio.wait_for(reader.read(), 10)
        sender.cancel()
        writer.close()
        assert received.startswith(b"HTTP/1.1 408"), received
        assert time.monotonic() - started >= HEADER_TIMEOUT_S * 0.9

    async def idle_kept_alive() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request())
        assert status_of(await _one_response(reader)) == 200
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the keep-alive timeout
        writer.close()
        assert 1.5 < time.monotonic() - started < 4

    await asyncio.gather(slowloris(), silent(), slow_body(), kept_alive_then_slow(), idle_kept_alive())


async def _one_response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


class Flood:
    """An upstream that streams 50 MB of SSE as fast as the connection takes it, counting what it sent."""

    EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"' + b"x" * 1000 + b'"}}]}\n\n'
    TOTAL = 50 * 1024 * 1024

    def __init__(self) -> None:
        self.sent = 0
        self.stopped = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            while self.sent < self.TOTAL:
                await response.write(self.EVENT)  # returns only once the transport drained enough
                self.sent += len(self.EVENT)
            await response.write(b"data: [DONE]\n\n")
        finally:
            self.stopped.set()
        return response


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_a_client_that_does_not_read_pauses_the_upstream(tmp_path: Path) -> None:
    flood = Flood()
    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", flood.handle)
    async with serve_app(upstream) as up:
        port = free_port()
        config = tmp_path / "gateway.yaml"
        config.write_text(f"server: {{port: {port}}}\n" + canned_config(up.url))
        with gateway_process(config, port) as gw:
            await gw.wait_ready()
            rss_before = rss_mb(gw.proc.pid)
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # before connect: a small window
            client.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(client, ("127.0.0.1", port))
            body = b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}'
            await loop.sock_sendall(client, request(body=body))
            try:
                await asyncio.sleep(1.0)  # the client reads nothing at all
                stalled_at = flood.sent
                await asyncio.sleep(1.0)
                assert flood.sent == stalled_at, "the upstream kept sending to a client that reads nothing"
                # Only socket buffers' worth got ahead (kernel buffers, not the gateway's memory).
                assert 0 < stalled_at < flood.TOTAL * 0.4, stalled_at
                assert rss_mb(gw.proc.pid) - rss_before < 16
                received = 0
                while received < 4 * 1024 * 1024:
                    received += len(await asyncio.wait_for(loop.sock_recv(client, 1 << 20), 5))
                await asyncio.sleep(0.2)
                assert flood.sent > stalled_at, "reading should let the upstream go on"
            finally:
                client.close()
            await asyncio.wait_for(flood.stopped.wait(), 10)  # the client left: the upstream call ends
            assert flood.sent < flood.TOTAL
