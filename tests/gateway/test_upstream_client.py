"""The upstream client keeps no state between requests that one team could pass to another."""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest
import trustme
import uvloop
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway import cli
from gateway.config import Timeouts
from gateway.egress import EgressProxies, Proxy
from gateway.errors import UpstreamUnavailable
from gateway.http1 import connect_request, target
from gateway.upstream import UpstreamClient
from plugins.dialects.base import OutboundRequest, StreamPlan
from tests.gateway.test_server import process_config
from tests.harness import OTHER_TEAM_KEY, TEAM_KEY, free_port, gateway, serve_app
from tests.processes import gateway_process

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
    return head, await reader.readexactly(content_length(head))


def content_length(head: bytes) -> int:
    return next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))


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


def completions_app(seen: list[CIMultiDictProxy[str]] | None = None) -> web.Application:
    """Answers every chat completion with ``COMPLETION``; records each request's headers in ``seen``."""

    async def answer(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(request.headers)
        return web.json_response(COMPLETION)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    return app


@asynccontextmanager
async def tls_upstream(ca: trustme.CA, app: web.Application) -> AsyncIterator[str]:
    """``app`` over TLS on loopback, with a certificate for ``localhost`` from ``ca``; yields its URL."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_tls)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_tls).start()
    try:
        yield f"https://localhost:{port}"  # localhost may resolve to ::1 first: the next address is tried
    finally:
        await runner.cleanup()


async def test_tls_upstreams_are_verified(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ca = trustme.CA()
    async with tls_upstream(ca, completions_app()) as url:
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


# -- an egress proxy between the gateway and its upstreams -----------------------------------------

SECRET = "s3cret-pw"


class EgressProxy:
    """A forward proxy on loopback that behaves as a corporate one does: ``CONNECT host:port``
    opens a TCP tunnel to the target and splices bytes both ways; a request in absolute form
    (``POST http://host:port/path``) goes on to its host in origin form, without
    ``Proxy-Authorization``, and the answers come back spliced. Records the head of every request
    it receives; with ``answer`` set it sends that instead and closes the connection."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._streams: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> EgressProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for stream in self._streams:
            stream.close()  # and so every handler ends
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def url_with(self, credentials: str) -> str:
        return self.url.replace("http://", f"http://{credentials}@")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        self._streams.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.heads.append(head)
            if self.answer is not None:
                writer.write(self.answer)
                await writer.drain()
                return
            if head.startswith(b"CONNECT "):
                await self._tunnel(head, reader, writer)
            else:
                await self._forward(head, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._handlers.discard(handler)

    async def _tunnel(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        upstream_reader, upstream_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        self._streams.add(upstream_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(splice(reader, upstream_writer), splice(upstream_reader, writer))

    async def _forward(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = urlsplit(head.split(b" ")[1].decode())
        upstream_reader, upstream_writer = await asyncio.open_connection(target.hostname, target.port or 80)
        self._streams.add(upstream_writer)
        answers = asyncio.ensure_future(splice(upstream_reader, writer))
        try:
            while True:  # one request after the other on this connection, until the client closes it
                body = await reader.readexactly(content_length(head))
                upstream_writer.write(origin_form(head) + body)
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
        finally:
            upstream_writer.close()
            await answers


def origin_form(head: bytes) -> bytes:
    """``head`` as its origin is sent it: ``POST /path``, and no credentials for the proxy."""
    request_line, *fields = head.split(b"\r\n")
    method, url, version = request_line.split(b" ")
    parts = urlsplit(url)
    path = parts.path + (b"?" + parts.query if parts.query else b"")
    kept = [field for field in fields if not field.lower().startswith(b"proxy-authorization:")]
    return b"\r\n".join([b" ".join([method, path, version]), *kept])


async def splice(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """``source``'s bytes to ``sink`` until either end closes; then ``sink`` is closed too."""
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()


LOOPS = pytest.mark.parametrize("new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])


def run(new_loop: Callable[[], asyncio.AbstractEventLoop], main: Coroutine[Any, Any, None]) -> None:
    """``main`` on an event loop from ``new_loop``: the gateway serves on uvloop, whose TLS
    upgrade of a connection (``start_tls``) is its own code, not asyncio's."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main)


@pytest.fixture
def egress_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable but those the test sets."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def trusted_ca(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> trustme.CA:
    """A CA the process trusts, as an organisation's is trusted: through ``SSL_CERT_FILE``."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    return ca


@asynccontextmanager
async def upstream_client() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient.create()  # the proxy variables and SSL_CERT_FILE are read now
    try:
        yield client
    finally:
        await client.close()


async def ask(client: UpstreamClient, base_url: str, connect_s: float = 5) -> tuple[int, Any]:
    request = OutboundRequest(
        f"{base_url}/v1/chat/completions", {"Content-Type": "application/json"}, orjson.dumps(CHAT), StreamPlan()
    )
    async with await client.send(request, Timeouts(connect_s=connect_s)) as response:
        return response.status, orjson.loads(await response.read(1 << 20))


async def connect_failure(client: UpstreamClient, base_url: str, connect_s: float = 5) -> str:
    """The message of the connect failure a request to ``base_url`` meets; it never holds the secret."""
    with pytest.raises(UpstreamUnavailable) as caught:
        await asyncio.wait_for(ask(client, base_url, connect_s), connect_s + 5)
    assert caught.value.reason == "connect"
    assert SECRET not in everything_said(caught.value)
    return str(caught.value)


def authority(url: str) -> bytes:
    return urlsplit(url).netloc.encode()


@LOOPS
@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_an_https_upstream_is_reached_through_a_tunnel_that_is_kept_alive(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    variable: str,
    egress_env: pytest.MonkeyPatch,
    trusted_ca: trustme.CA,
) -> None:
    seen: list[CIMultiDictProxy[str]] = []

    async def main() -> None:
        async with tls_upstream(trusted_ca, completions_app(seen)) as url, EgressProxy() as proxy:
            egress_env.setenv(variable, proxy.url)
            egress_env.setenv("NO_PROXY", "internal.example,host")  # neither covers localhost
            async with upstream_client() as client:
                assert await ask(client, url) == (200, COMPLETION)
                assert await ask(client, url) == (200, COMPLETION)
        # One tunnel for both requests; the proxy saw only where to, TLS ran end to end inside.
        assert proxy.heads == [b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (authority(url), authority(url))]
        assert len(seen) == 2

    run(new_loop, main())


@LOOPS
def test_the_proxy_credentials_go_to_the_proxy_and_nowhere_else(
    new_loop: Callable[[], asyncio.AbstractEventLoop], egress_env: pytest.MonkeyPatch, trusted_ca: trustme.CA
) -> None:
    seen: list[CIMultiDictProxy[str]] = []

    async def main() -> None:
        async with tls_upstream(trusted_ca, completions_app(seen)) as url, EgressProxy() as proxy:
            egress_env.setenv("HTTPS_PROXY", proxy.url_with("gw%40corp:p%3Ass%2Fw%C3%B6rd"))  # percent-encoded
            async with upstream_client() as client:
                assert await ask(client, url) == (200, COMPLETION)
        (head,) = proxy.heads
        assert b"\r\nProxy-Authorization: Basic %s\r\n" % base64.b64encode("gw@corp:p:ss/wörd".encode()) in head
        assert [headers.get("Proxy-Authorization") for headers in seen] == [None]

    run(new_loop, main())


@pytest.mark.parametrize("no_proxy", ["localhost", "internal.example, LOCALHOST", "*"])
async def test_hosts_in_no_proxy_are_reached_directly(
    no_proxy: str, egress_env: pytest.MonkeyPatch, trusted_ca: trustme.CA
) -> None:
    async with tls_upstream(trusted_ca, completions_app()) as url, EgressProxy() as proxy:
        egress_env.setenv("HTTPS_PROXY", proxy.url)
        egress_env.setenv("no_proxy", no_proxy)
        async with upstream_client() as client:
            assert await ask(client, url) == (200, COMPLETION)
    assert proxy.connections == 0


@pytest.mark.parametrize(
    ("no_proxy", "host", "direct"),
    [
        ("corp.example", "api.corp.example", True),
        (".corp.example", "api.corp.example", True),
        ("corp.example", "corp.example", True),
        ("CORP.example ,other.example", "api.corp.example", True),
        ("corp.example", "notcorp.example", False),
        ("10.1.2.3", "10.1.2.3", True),
        ("10.1.2.3", "10.1.2.4", False),
        ("*", "anything.example", True),
        ("", "api.corp.example", False),
    ],
)
def test_no_proxy_matches_hosts_and_domain_suffixes(no_proxy: str, host: str, direct: bool) -> None:
    proxies = EgressProxies(https=Proxy("proxy.corp.example", 3128), no_proxy=no_proxy)
    assert (proxies.proxy_for(host, tls=True) is None) is direct


@LOOPS
@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="corp"\r\n'
            b"Content-Length: 0\r\n\r\n",
            "the egress proxy refused the tunnel (407 Proxy Authentication Required)",
        ),
        (b"HTTP/1.1 403 Denied by policy\r\n\r\n", "the egress proxy refused the tunnel (403 Forbidden)"),
        (b"HTTP/1.0 502 Bad Gateway\r\n\r\n", "the egress proxy refused the tunnel (502 Bad Gateway)"),
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "the egress proxy's answer to CONNECT is not HTTP/1.1"),
        (b"", "the egress proxy closed the connection before answering CONNECT"),
    ],
    ids=["407", "403", "502", "not http", "closed"],
)
def test_a_proxy_that_opens_no_tunnel_is_a_connect_failure(
    new_loop: Callable[[], asyncio.AbstractEventLoop],
    answer: bytes,
    reason: str,
    egress_env: pytest.MonkeyPatch,
    trusted_ca: trustme.CA,
) -> None:
    async def main() -> None:
        async with tls_upstream(trusted_ca, completions_app()) as url, EgressProxy(answer) as proxy:
            egress_env.setenv("HTTPS_PROXY", proxy.url_with(f"gw:{SECRET}"))
            async with upstream_client() as client:
                message = await connect_failure(client, url)
        assert message == f"Cannot connect to the upstream: {reason}."

    run(new_loop, main())


@LOOPS
def test_a_proxy_that_cannot_be_reached_is_a_connect_failure(
    new_loop: Callable[[], asyncio.AbstractEventLoop], egress_env: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        egress_env.setenv("HTTPS_PROXY", f"http://gw:{SECRET}@127.0.0.1:{free_port()}")
        async with upstream_client() as client:
            message = await connect_failure(client, "https://localhost:1")
        assert message.startswith("Cannot connect to the upstream: the egress proxy cannot be reached (")

    run(new_loop, main())


@LOOPS
def test_a_proxy_that_never_answers_connect_is_bounded_by_connect_s(
    new_loop: Callable[[], asyncio.AbstractEventLoop], egress_env: pytest.MonkeyPatch
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes CONNECT, says nothing, until the gateway gives up

    async def main() -> None:
        async with RawUpstream(silent) as proxy:
            egress_env.setenv("HTTPS_PROXY", proxy.url)
            async with upstream_client() as client:
                message = await connect_failure(client, "https://localhost:1", connect_s=0.2)
        assert message == "Cannot connect to the upstream through the egress proxy within 0.2 s."
        assert proxy.connections == 1

    run(new_loop, main())


def everything_said(error: BaseException) -> str:
    """The text and repr of ``error`` and of every exception chained to it."""
    said = []
    current: BaseException | None = error
    while current is not None:
        said += [str(current), repr(current)]
        current = current.__cause__ or current.__context__
    return "\n".join(said)


async def test_the_callers_error_for_a_refused_tunnel_names_the_proxy_not_its_credentials(
    egress_env: pytest.MonkeyPatch, trusted_ca: trustme.CA, capsys: pytest.CaptureFixture[str]
) -> None:
    refusal = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
    async with tls_upstream(trusted_ca, completions_app()) as url, EgressProxy(refusal) as proxy:
        egress_env.setenv("HTTPS_PROXY", proxy.url_with(f"gw:{SECRET}"))
        async with gateway(config(url)) as gw:
            status, body = await post(gw.url)
    assert status == 502
    error = orjson.loads(body)["error"]
    assert error["code"] == "upstream_unavailable"
    assert "the egress proxy refused the tunnel (407 Proxy Authentication Required)" in error["message"]
    assert SECRET not in body.decode()
    assert SECRET not in capsys.readouterr().out  # nor in the gateway's log lines
    assert base64.b64encode(f"gw:{SECRET}".encode()).decode() not in body.decode()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        (f"socks5://gw:{SECRET}@proxy.corp.example:1080", "must be an http:// URL, not socks5://"),
        (f"https://gw:{SECRET}@proxy.corp.example", "must be an http:// URL, not https://"),
        (f"http://gw:{SECRET}@proxy.corp.example:31x8", "URL cannot be parsed"),
    ],
)
def test_a_proxy_url_the_gateway_cannot_use_stops_it_at_start(
    url: str, complaint: str, egress_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    egress_env.setenv("HTTPS_PROXY", url)
    path = tmp_path / "gateway.yaml"
    path.write_text(config("https://upstream.example"))
    assert cli.main(["run", "--config", str(path)]) == 1
    said = capsys.readouterr().err
    assert f"HTTPS_PROXY: the egress proxy {complaint}" in said
    assert SECRET not in said


@LOOPS
def test_an_http_upstream_is_reached_through_http_proxy_in_absolute_form(
    new_loop: Callable[[], asyncio.AbstractEventLoop], egress_env: pytest.MonkeyPatch
) -> None:
    seen: list[CIMultiDictProxy[str]] = []

    async def main() -> None:
        async with serve_app(completions_app(seen)) as upstream, EgressProxy() as proxy:
            egress_env.setenv("HTTP_PROXY", proxy.url_with(f"gw:{SECRET}"))
            async with upstream_client() as client:
                assert await ask(client, upstream.url) == (200, COMPLETION)
                assert await ask(client, upstream.url) == (200, COMPLETION)
        credentials = base64.b64encode(f"gw:{SECRET}".encode())
        expected = b"POST %s/v1/chat/completions HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n" % (
            upstream.url.encode(),
            authority(upstream.url),
            credentials,
        )
        assert [head.startswith(expected) for head in proxy.heads] == [True, True]
        assert proxy.connections == 1  # kept alive, as a direct connection is
        assert [headers.get("Proxy-Authorization") for headers in seen] == [None, None]

    run(new_loop, main())


@LOOPS
def test_a_407_from_the_proxy_of_an_http_upstream_is_a_connect_failure(
    new_loop: Callable[[], asyncio.AbstractEventLoop], egress_env: pytest.MonkeyPatch
) -> None:
    refusal = b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="corp"\r\n'
    refusal += b"Content-Length: 0\r\n\r\n"

    async def main() -> None:
        async with serve_app(completions_app()) as upstream, EgressProxy(refusal) as proxy:
            egress_env.setenv("HTTP_PROXY", proxy.url_with(f"gw:{SECRET}"))
            async with upstream_client() as client:
                message = await connect_failure(client, upstream.url)
        assert message == (
            "Cannot connect to the upstream: the egress proxy refused the request (407 Proxy Authentication Required)."
        )

    run(new_loop, main())


def test_each_scheme_has_its_own_proxy(egress_env: pytest.MonkeyPatch) -> None:
    egress_env.setenv("HTTPS_PROXY", "http://tls-proxy.corp.example:3128")
    proxies = EgressProxies.from_environment()
    assert proxies.proxy_for("api.example", tls=False) is None
    egress_env.setenv("HTTP_PROXY", "http://plain-proxy.corp.example:8080")
    proxies = EgressProxies.from_environment()
    assert proxies.proxy_for("api.example", tls=True) == Proxy("tls-proxy.corp.example", 3128)
    assert proxies.proxy_for("api.example", tls=False) == Proxy("plain-proxy.corp.example", 8080)


def test_a_connect_request_names_only_the_origins_host_and_port() -> None:
    origin, _ = target("https://user:pw@[::1]:8443/openai/v1/chat/completions?api-version=preview")
    assert connect_request(origin, Proxy("proxy.corp.example", 3128, "Basic Z3c6cHc=")) == (
        b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\nProxy-Authorization: Basic Z3c6cHc=\r\n\r\n"
    )


def test_a_proxys_credentials_stay_out_of_its_repr() -> None:
    proxy = Proxy.from_url(f"http://gw:{SECRET}@proxy.corp.example:3128", "HTTPS_PROXY")
    assert proxy.authorization == "Basic " + base64.b64encode(f"gw:{SECRET}".encode()).decode()
    assert repr(proxy) == "Proxy(host='proxy.corp.example', port=3128)"
    assert SECRET not in repr(EgressProxies(https=proxy))


def test_all_proxy_is_only_the_fallback(egress_env: pytest.MonkeyPatch) -> None:
    egress_env.setenv("ALL_PROXY", "socks5://proxy.corp.example:1080")  # for other tools
    egress_env.setenv("HTTPS_PROXY", "proxy.corp.example:3128")  # no scheme: http://, as curl reads it
    egress_env.setenv("HTTP_PROXY", "http://proxy.corp.example:3128")
    proxies = EgressProxies.from_environment()
    assert proxies.https == proxies.http == Proxy("proxy.corp.example", 3128)


async def test_a_gateway_process_reaches_its_upstream_through_the_egress_proxy(
    egress_env: pytest.MonkeyPatch, trusted_ca: trustme.CA, tmp_path: Path
) -> None:
    """``gateway run`` on uvloop, HTTPS_PROXY (with credentials) and SSL_CERT_FILE in its environment."""
    seen: list[CIMultiDictProxy[str]] = []
    async with tls_upstream(trusted_ca, completions_app(seen)) as url, EgressProxy() as proxy:
        egress_env.setenv("HTTPS_PROXY", proxy.url_with(f"gw:{SECRET}"))
        port = free_port()
        path = tmp_path / "gateway.yaml"
        path.write_text(process_config(url, port))
        with gateway_process(path, port) as process:
            await process.wait_ready()
            for _ in range(2):
                status, body = await post(process.url)
                assert (status, orjson.loads(body)) == (200, COMPLETION)
    assert len(seen) == 2
    (head,) = proxy.heads
    assert head.startswith(b"CONNECT %s HTTP/1.1\r\n" % authority(url))
    assert b"Proxy-Authorization: Basic " in head
    (started,) = process.events("egress_proxy")
    assert started["https_proxy"] == urlsplit(proxy.url).netloc
    assert SECRET not in process.text()
