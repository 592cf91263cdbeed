"""The upstream client keeps no state between requests that one team could pass to another."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import trustme
from aiohttp import web

from gateway.http1 import target
from tests.harness import OTHER_TEAM_KEY, TEAM_KEY, free_port, gateway, serve_app

COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class CookieSettingUpstream:
    """Sets a session cookie on every answer, as load balancers in front of deployments do."""

    def __init__(self) -> None:
        self.cookies_received: list[str | None] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        self.cookies_received.append(request.headers.get("Cookie"))
        response = web.json_response(COMPLETION)
        response.set_cookie("session", f"for-request-{len(self.cookies_received)}", path="/")
        return response


def config(upstream_url: str) -> str:
    return f"""
deployments:
  - {{name: lb, dialect: openai, url: {upstream_url}/v1, model: m, api_key: upstream-key}}
models:
  m: {{deployments: [lb]}}
teams:
  team-a: {{keys: [{TEAM_KEY}]}}
  team-b: {{keys: [{OTHER_TEAM_KEY}]}}
"""


async def test_an_upstreams_cookie_is_never_sent_on_a_later_request() -> None:
    upstream = CookieSettingUpstream()
    async with serve_app(upstream.app()) as served:
        # A host name, not an IP: aiohttp's default cookie jar ignores cookies from IP addresses,
        # so only a named upstream shows whether the gateway's client stores them.
        named = served.url.replace("127.0.0.1", "localhost")
        async with gateway(config(named)) as gw, aiohttp.ClientSession() as session:
            for key in (TEAM_KEY, OTHER_TEAM_KEY, TEAM_KEY):
                async with session.post(
                    f"{gw.url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {key}"},
                    json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                ) as response:
                    assert response.status == 200
                    # Nor does a caller see the upstream's cookie: it belongs to the gateway's hop.
                    assert "Set-Cookie" not in response.headers
    assert upstream.cookies_received == [None, None, None]


# -- the HTTP/1.1 client's framing, reuse and flow control, against real sockets -------------------

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"Authorization": f"Bearer {TEAM_KEY}"}


class RawUpstream:
    """A TCP server whose every connection is handed to ``answer``; counts the connections."""

    def __init__(self, answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
        self.answer = answer
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head, await reader.readexactly(length)


BODY = orjson.dumps(COMPLETION)


async def post(gw_url: str, body: dict[str, Any] = CHAT) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gw_url}/v1/chat/completions", headers=AUTH, json=body) as response,
    ):
        return response.status, await response.read()


async def test_keep_alive_connections_are_reused() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY))
            writer.write(BODY)

    async with RawUpstream(answer) as upstream, gateway(config(upstream.url)) as gw:
        for _ in range(5):
            assert await post(gw.url) == (200, BODY)
    assert upstream.connections == 1


async def test_a_connection_the_upstream_closed_is_replaced() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        # Keep-alive by its headers, then closed anyway: as a server whose idle timeout ran out.
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY))
        writer.write(BODY)
        await writer.drain()

    async with RawUpstream(answer_once) as upstream, gateway(config(upstream.url)) as gw:
        for _ in range(3):
            assert await post(gw.url) == (200, BODY)
            await asyncio.sleep(0.05)  # the close reaches the gateway before its next request
    assert upstream.connections == 3


async def test_a_body_delimited_by_the_close_is_read_whole() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        for i in range(0, len(BODY), 7):
            writer.write(BODY[i : i + 7])
            await writer.drain()

    async with RawUpstream(answer) as upstream, gateway(config(upstream.url)) as gw:
        assert await post(gw.url) == (200, BODY)
        assert await post(gw.url) == (200, BODY)
    assert upstream.connections == 2


async def test_informational_answers_are_skipped_and_gzip_is_decoded() -> None:
    packed = gzip.compress(BODY)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(packed), 50):
            piece = packed[i : i + 50]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with RawUpstream(answer) as upstream, gateway(config(upstream.url)) as gw:
        assert await post(gw.url) == (200, BODY)


@pytest.mark.parametrize(
    "garbage",
    [
        b"SPDY/9 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
        + b"\r\n{}",
    ],
    ids=["not http", "two content-lengths", "an encoding never asked for", "70 KB of headers"],
)
async def test_an_answer_that_is_not_http_is_a_502_in_the_callers_dialect(garbage: bytes) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(garbage)
        await writer.drain()
        await reader.read()

    async with RawUpstream(answer) as upstream, gateway(config(upstream.url)) as gw:
        status, body = await post(gw.url)
        assert status == 502
        assert orjson.loads(body)["error"]["code"] == "upstream_unavailable"


async def test_an_answer_over_the_head_limit_is_named_as_such() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n")
        writer.write(b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70)) + b"\r\n{}")
        await writer.drain()
        await reader.read()

    async with RawUpstream(answer) as upstream, gateway(config(upstream.url)) as gw:
        status, body = await post(gw.url)
    assert status == 502
    assert "headers exceed 65536 bytes" in orjson.loads(body)["error"]["message"]


async def test_a_header_value_with_a_line_break_is_never_sent() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise AssertionError("nothing may reach the upstream")

    async with RawUpstream(answer) as upstream:
        text = config(upstream.url).replace("api_key: upstream-key", 'api_key: "key\\r\\nX-Injected: yes"')
        async with gateway(text) as gw:
            status, body = await post(gw.url)
    assert status == 502
    assert b"X-Injected" not in body and b"key" not in body.lower().replace(b"api_key", b"")
    assert upstream.connections == 0


async def test_a_slow_client_pauses_reading_from_the_upstream() -> None:
    """The upstream offers 64 MiB of stream at once; a client that reads nothing for a second
    leaves it blocked after a bounded amount (socket buffers plus the client's high-water mark)."""
    event = b"data: " + orjson.dumps({"choices": [{"delta": {"content": "x" * 65000}}]}) + b"\n\n"
    written = 0
    blocked = asyncio.Event()

    class Flood:
        async def handle(self, request: web.Request) -> web.StreamResponse:
            nonlocal written
            await request.read()
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            try:
                for _ in range(64 * 1024 * 1024 // len(event)):
                    await response.write(event)
                    written += len(event)
            except (ConnectionError, asyncio.CancelledError):
                blocked.set()
                raise
            return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", Flood().handle)
    async with serve_app(app) as served, gateway(config(served.url)) as gw:
        _, writer = await asyncio.open_connection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))
        body = orjson.dumps({**CHAT, "stream": True})
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (TEAM_KEY.encode(), len(body), body)
        )
        await writer.drain()
        await asyncio.sleep(1.0)  # the client reads nothing meanwhile
        assert 0 < written < 24 * 1024 * 1024
        writer.close()
        await asyncio.wait_for(blocked.wait(), 5)  # the client left: the upstream is told


def test_targets_are_parsed_once_per_url() -> None:
    origin, path = target("https://user:pw@[::1]:8443/openai/deployments/d/chat/completions?api-version=2024-10-21")
    assert (origin.host, origin.port, origin.tls, origin.authority) == ("::1", 8443, True, "[::1]:8443")
    assert path == "/openai/deployments/d/chat/completions?api-version=2024-10-21"
    origin, path = target("http://example.com")
    assert (origin.port, origin.authority, path) == (80, "example.com", "/")
    with pytest.raises(ValueError):
        target("ftp://example.com/v1")


async def test_tls_upstreams_are_verified(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)

    async def answer(_: web.Request) -> web.Response:
        return web.json_response(COMPLETION)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_tls).start()
    url = f"https://localhost:{port}"  # localhost may resolve to ::1 first: the next address is tried
    try:
        async with gateway(config(url)) as gw:
            status, body = await post(gw.url)
        assert status == 502
        assert b"certificate verify failed" in body
        # The process's trust store, as OpenSSL reads it: SSL_CERT_FILE names the organisation's CA.
        ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
        async with gateway(config(url)) as gw:
            status, body = await post(gw.url)
        assert (status, orjson.loads(body)) == (200, COMPLETION)
    finally:
        await runner.cleanup()


async def test_a_json_answer_larger_than_the_read_buffer_arrives_whole() -> None:
    """Embeddings answers run to megabytes; reading one whole must not stall on flow control."""
    big = orjson.dumps({**COMPLETION, "padding": "x" * (5 * 1024 * 1024)})

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(big))
        for i in range(0, len(big), 65536):
            writer.write(big[i : i + 65536])
            await writer.drain()
        await reader.read()

    async with RawUpstream(answer) as upstream, gateway(config(upstream.url)) as gw:
        assert await asyncio.wait_for(post(gw.url), 10) == (200, big)


async def test_a_reset_cuts_a_close_delimited_body_short_and_is_a_502() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + BODY[:20])
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
        writer.transport.abort()

    async with RawUpstream(answer) as upstream, gateway(config(upstream.url)) as gw:
        status, body = await post(gw.url)
    assert status == 502, body


def _stale_upstream(second_answer: bytes) -> tuple[RawUpstream, list[int]]:
    """Answers the first request of a connection, then reads the second, writes
    ``second_answer`` (maybe nothing) and drops the connection: as a server whose keep-alive timeout
    ran out while that request was on its way. Records each connection's request count."""
    requests: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(0)
        slot = len(requests) - 1
        await read_request(reader)
        requests[slot] += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(BODY))
        writer.write(BODY)
        await writer.drain()
        await read_request(reader)
        requests[slot] += 1
        writer.write(second_answer)
        await writer.drain()

    return RawUpstream(answer), requests


async def test_a_kept_alive_connection_dropped_as_it_is_reused_is_retried_on_a_new_one() -> None:
    upstream, requests = _stale_upstream(b"")
    async with upstream, gateway(config(upstream.url)) as gw:
        assert await post(gw.url) == (200, BODY)
        assert await post(gw.url) == (200, BODY)  # sent twice upstream: dropped, then on a new connection
    assert requests == [2, 1]


async def test_a_reused_connection_that_began_an_answer_is_not_retried() -> None:
    upstream, requests = _stale_upstream(b"HTTP/1.1 200 OK\r\n")
    async with upstream, gateway(config(upstream.url)) as gw:
        assert await post(gw.url) == (200, BODY)
        status, _ = await post(gw.url)
    assert status == 502
    assert requests == [2]


async def test_a_new_connection_dropped_without_an_answer_is_not_retried() -> None:
    dropped = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal dropped
        await read_request(reader)
        dropped += 1

    async with RawUpstream(answer) as upstream, gateway(config(upstream.url)) as gw:
        status, _ = await post(gw.url)
    assert status == 502
    assert dropped == 1
    assert upstream.connections == 1
