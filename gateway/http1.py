"""HTTP/1.1 to upstreams: keep-alive connections per origin, responses parsed by llhttp.

The upstream hop only ever POSTs a body of known size and reads one answer, sized or chunked.
aiohttp's ``ClientSession`` does that with a general client's per-request machinery (URL and
header merging, cookie, proxy and redirect handling, a task to write each body, a timer per
read), which was the largest single share of the gateway's CPU per request. This module does
only the upstream hop's work: one ``write`` per request, llhttp (``httptools``, uvicorn's parser)
for the answer, one watchdog timer per response, and read flow control toward slow consumers.

Through an egress proxy (``gateway.egress``), an https origin is reached by ``CONNECT`` and TLS
inside the tunnel; once the tunnel is up, the connection is like any other. An http origin's
requests go to the proxy itself, in absolute form (``POST http://host/path``), as curl and
requests send them: proxies commonly allow CONNECT to port 443 only. Whether an origin is
proxied is decided once per URL (``Pool.route``), not per request.

Errors leave as ``OSError`` (connect and transport failures; ``ProxyError`` when the proxy is
the cause), ``ProtocolError`` (an answer that is not HTTP) and ``TimeoutError``;
``gateway.upstream`` translates them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import socket
import ssl
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TypeVar, cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.egress import EgressProxies, Proxy, host_port

#: Idle connections older than this are closed rather than reused: a server's own keep-alive
#: timeout (nginx: 75 s) should not race a request sent on a connection it is about to close.
KEEPALIVE_S = 30.0
#: Idle connections kept per origin; beyond this (after a burst of streams) they are closed.
MAX_IDLE_PER_ORIGIN = 256
#: Buffered body bytes above which reading from the upstream pauses until the consumer catches up.
HIGH_WATER = 256 * 1024
#: An answer's status line and headers may not exceed this.
MAX_HEAD_BYTES = 64 * 1024
#: What one network read of a compressed answer may expand to: a few KiB of gzip can inflate to
#: gigabytes, and the gateway never asks for compression, so a larger expansion is an error.
MAX_INFLATE_BYTES = 64 * 1024 * 1024
DNS_TTL_S = 60.0

_P = TypeVar("_P", bound=asyncio.Protocol)


class ProtocolError(Exception):
    """The upstream's bytes are not a valid HTTP/1.1 answer."""


class BodyTooLarge(Exception):
    """An answer read whole is larger than the reader's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


class ProxyError(OSError):
    """The egress proxy cannot be reached, or would not open a tunnel or pass a request on. The
    message names no address and no credential; when the proxy cannot be reached, the OS's error
    is the cause."""


@dataclass(frozen=True, slots=True)
class Origin:
    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    #: The ``Host`` header: the URL's host and port as written, without credentials.
    authority: str
    #: The egress proxy connections go through, or None: directly.
    proxy: Proxy | None = None


def target(url: str) -> tuple[Origin, str]:
    """The origin and request target (path and query) of ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    origin = Origin((parts.scheme, parts.hostname, port), parts.hostname, port, tls, parts.netloc.rpartition("@")[2])
    return origin, path


def request_head(origin: Origin, path: str) -> str:
    """The request line and ``Host`` header, the same for every request to one URL. To an http
    origin through a proxy: the whole URL (absolute form), and the proxy's credentials."""
    proxy = origin.proxy
    if proxy is None or origin.tls:
        return f"POST {path} HTTP/1.1\r\nHost: {origin.authority}\r\n"
    credentials = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
    return f"POST http://{origin.authority}{path} HTTP/1.1\r\nHost: {origin.authority}\r\n{credentials}"


def encode_request(head: str, headers: dict[str, str], body: bytes) -> bytes:
    """``head`` (from ``Pool.route``), then ``headers`` and the body."""
    lines = [head]
    for name, value in headers.items():
        # A line break in a header would let a value start a header (or a request) of its own.
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
            raise ValueError(f"header {name!r} cannot be sent: it contains a line break or a colon")
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "".join(lines).encode("latin-1") + body


class Response:
    """One answer on one connection: status and headers first, then the body as it arrives."""

    __slots__ = (
        "_buffer",
        "_decoder",
        "_eof",
        "_error",
        "_headers_waiter",
        "_limit",
        "_loop",
        "_paused",
        "_size",
        "_waiter",
        "_watchdog",
        "_whole",
        "connection",
        "headers",
        "idle_s",
        "keep_alive",
        "status",
    )

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        self.connection = conn
        self._loop = loop
        self.status = 0
        self.headers: CIMultiDictProxy[str] = _NO_HEADERS
        self.keep_alive = False
        self.idle_s = 0.0
        self._buffer: list[bytes] = []
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._paused = False
        #: The reader wants the whole body (``read``): flow control would only stall it.
        self._whole = False
        #: The most body bytes (decoded) the reader takes: set by ``read``, unbounded for a stream.
        self._limit = _UNBOUNDED
        self._decoder: zlib._Decompress | None = None
        self._headers_waiter: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    # -- the reader's side ----------------------------------------------------------------------

    async def started(self, first_byte_s: float) -> None:
        """Wait for the status and headers, at most ``first_byte_s``."""
        if self._headers_waiter.done():
            self._headers_waiter.result()  # raises what failed it
            return
        timer = self._loop.call_later(first_byte_s, self._first_byte_timeout)
        try:
            await self._headers_waiter
        finally:
            timer.cancel()

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    def ready(self) -> bool:
        """``readany`` would answer without waiting (data, the end, or an error)."""
        return bool(self._buffer) or self._eof or self._error is not None

    async def read(self, limit: int) -> bytes:
        """The whole body, ``BodyTooLarge`` past ``limit`` bytes; at most ``idle_s`` between arrivals."""
        declared = self.headers.get("Content-Length", "")
        if self._size > limit or (declared.isdigit() and int(declared) > limit):
            raise BodyTooLarge(limit)  # said before a byte is read: the caller drops the connection
        self._whole = True
        self._limit = limit
        self._resume()
        while not self._eof:
            await self._wait()
        return self._take()

    async def readany(self) -> bytes:
        """What has arrived (waiting for something if nothing has); ``b""`` at the end."""
        while not self._buffer:
            if self._eof:
                return b""
            await self._wait()
        return self._take()

    def _take(self) -> bytes:
        """Everything buffered, handed over; reading resumes if it was paused."""
        data = b"".join(self._buffer) if len(self._buffer) != 1 else self._buffer[0]
        self._buffer = []
        self._size = 0
        self._resume()
        return data

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self.connection.resume_reading()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = self._loop.create_future()
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self.connection.last_data + self.idle_s, self._watch)
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None and not self._buffer:
            raise self._error

    def _watch(self) -> None:
        """One timer for the whole body, moved on when data came since it was set."""
        self._watchdog = None
        if self._eof or self._error is not None:
            return
        due = self.connection.last_data + self.idle_s
        if self._paused or due > self._loop.time():
            # Paused: the consumer is slow, not the upstream; no bytes are expected meanwhile.
            start = self._loop.time() if self._paused else self.connection.last_data
            self._watchdog = self._loop.call_at(start + self.idle_s, self._watch)
            return
        self.fail(TimeoutError("idle"))

    def _first_byte_timeout(self) -> None:
        if not self._headers_waiter.done():
            self._headers_waiter.set_exception(TimeoutError("first byte"))

    # -- the connection's side ------------------------------------------------------------------

    def headers_arrived(self, status: int, headers: CIMultiDict[str], keep_alive: bool) -> None:
        self.status = status
        self.headers = CIMultiDictProxy(headers)
        self.keep_alive = keep_alive
        encoding = headers.get("Content-Encoding", "identity").lower()
        if encoding in ("gzip", "deflate"):
            self._decoder = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib, by header
        elif encoding != "identity":
            self.fail(ProtocolError(f"unsupported Content-Encoding {encoding!r}"))
            return
        if not self._headers_waiter.done():
            self._headers_waiter.set_result(None)

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            return  # refused: what is still in this read goes nowhere
        if self._decoder is not None:
            data = self._decoder.decompress(data, MAX_INFLATE_BYTES)
            if self._decoder.unconsumed_tail:
                self._refuse(ProtocolError(f"a compressed read of the answer expands beyond {MAX_INFLATE_BYTES} bytes"))
                return
            if not data:
                return
        self._buffer.append(data)
        self._size += len(data)
        if self._size > self._limit:
            self._refuse(BodyTooLarge(self._limit))
        elif self._size > HIGH_WATER and not self._paused and not self._whole:
            self._paused = True
            self.connection.pause_reading()
        self._wake()

    def finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._buffer.append(tail)
        self._eof = True
        self._stop_watchdog()
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self._eof or self._error is not None:
            return
        self._error = error
        self._stop_watchdog()
        if not self._headers_waiter.done():
            self._headers_waiter.set_exception(error)
        self._wake()

    def _refuse(self, error: BaseException) -> None:
        """Fail the answer and drop its connection, so no more of it arrives or is kept."""
        self.fail(error)
        self._buffer = []
        self.connection.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
_UNBOUNDED = 1 << 62


class Connection(asyncio.Protocol):
    """One keep-alive TCP (or TLS) connection, answering one request at a time."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self._pool = pool
        self.origin = origin
        self._loop = pool.loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0
        #: No Content-Length and not chunked: the body ends when the upstream closes.
        self._until_close = False
        self._informational = False
        self.response: Response | None = None
        self.closed = False
        #: Taken from the idle pool rather than opened for the request being sent.
        self.reused = False
        #: Some byte of the current request's answer has arrived.
        self.answered = False
        self.idle_since = 0.0
        self.last_data = 0.0

    def send(self, data: bytes) -> Response:
        assert self._transport is not None and self.response is None
        self.response = response = Response(self, self._loop)
        self.answered = False
        self.last_data = self._loop.time()
        self._transport.write(data)
        return response

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._transport is not None:
                self._transport.close()
            if self.response is not None:  # wakes a reader and stops its watchdog now, not at the EOF
                self.response.fail(ConnectionAbortedError("the connection was closed by the gateway"))

    def pause_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.last_data = self._loop.time()
        self.answered = True
        if self.response is None:
            self.close()  # bytes nobody asked for: the connection's framing cannot be trusted
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(_parse_failure(exc))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        response = self.response
        if response is None:
            return
        if self._until_close and response.status and exc is None:  # a clean close ends the body
            response.finish()
        else:
            response.fail(exc or ConnectionResetError("the upstream closed the connection"))

    # -- llhttp callbacks -----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_HEAD_BYTES:
            raise ProtocolError(f"the upstream's headers exceed {MAX_HEAD_BYTES} bytes")
        self._headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        headers, self._headers, self._head_bytes = self._headers, [], 0
        if status < 200:  # 100 Continue and friends: the real answer follows
            self._informational = True
            return
        response = self.response
        assert response is not None
        if response.status:
            raise ProtocolError("the upstream sent a second answer to one request")
        multi = CIMultiDict(headers)
        self._until_close = "Content-Length" not in multi and "Transfer-Encoding" not in multi
        response.headers_arrived(status, multi, self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response.feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        assert self.response is not None
        self.response.finish()

    def _fail(self, error: BaseException) -> None:
        if self.response is not None:
            self.response.fail(error)
        self.close()


class _ForwardedConnection(Connection):
    """A connection to the egress proxy that carries an http origin's requests."""

    def on_headers_complete(self) -> None:
        if self._parser.get_status_code() == 407:  # the proxy's own answer: the request went no further
            raise ProxyError(f"the egress proxy refused the request ({_status_text(407)})")
        super().on_headers_complete()


def connect_request(origin: Origin, proxy: Proxy) -> bytes:
    """Asks ``proxy`` for a TCP tunnel to ``origin``: all it learns is the host and port."""
    authority = host_port(origin.host, origin.port)
    credentials = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
    return f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{credentials}\r\n".encode("latin-1")


#: The status line of the proxy's answer to ``CONNECT``; the status is what matters.
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?")


class _TunnelAnswer(asyncio.Protocol):
    """The egress proxy's answer to ``CONNECT``, read up to the end of its head."""

    transport: asyncio.Transport

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        #: Done when the proxy answered 2xx: the tunnel is open. A ``ProxyError`` otherwise.
        self.established: asyncio.Future[None] = loop.create_future()
        self._head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.established.done():
            return
        self._head += data
        if b"\r\n\r\n" in self._head:
            self._answered(self._head.partition(b"\r\n")[0])
        elif len(self._head) > MAX_HEAD_BYTES:
            self._fail(ProxyError(f"the egress proxy's answer to CONNECT exceeds {MAX_HEAD_BYTES} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        error = ProxyError("the egress proxy closed the connection before answering CONNECT")
        error.__cause__ = exc
        self._fail(error)

    def _answered(self, status_line: bytes) -> None:
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            self._fail(ProxyError("the egress proxy's answer to CONNECT is not HTTP/1.1"))
        elif not match[1].startswith(b"2"):
            self._fail(ProxyError(f"the egress proxy refused the tunnel ({_status_text(int(match[1]))})"))
        else:
            self.established.set_result(None)

    def _fail(self, error: ProxyError) -> None:
        if not self.established.done():
            self.established.set_exception(error)


def _status_text(status: int) -> str:
    """``407 Proxy Authentication Required``: the standard reason phrase, not the proxy's words."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _parse_failure(exc: Exception) -> Exception:
    """What a failed parse means. llhttp wraps an error raised by a callback here (it is the
    context of its own ``HttpParserCallbackError``); that one already says what went wrong."""
    if isinstance(exc.__context__, (ProtocolError, ProxyError)):
        return exc.__context__
    return ProtocolError(f"the upstream's answer is not valid HTTP/1.1: {exc}")


class Pool:
    """Idle keep-alive connections per origin, newest first."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._busy: set[Connection] = set()
        self._tls = ssl.create_default_context()
        self._addresses: dict[tuple[str, int], tuple[float, list[tuple[int, str]]]] = {}
        self._closed = False
        #: Read once: a process's environment does not change while it runs.
        self.proxies = EgressProxies.from_environment()
        #: ``route(url)``: cached, as deployments render few distinct URLs.
        self.route = functools.lru_cache(maxsize=1024)(self._route)

    def _route(self, url: str) -> tuple[Origin, str]:
        """The origin of ``url``, with the proxy that reaches it, and the head of every request sent to it."""
        origin, path = target(url)
        proxy = self.proxies.proxy_for(origin.host, origin.tls)
        if proxy is not None:
            origin = dataclasses.replace(origin, proxy=proxy)
        return origin, request_head(origin, path)

    async def acquire(self, origin: Origin, connect_s: float, *, new: bool = False) -> Connection:
        """An idle connection to ``origin`` (``reused``), or a new one; only a new one if ``new``."""
        if self._closed:
            raise ConnectionError("the upstream client is closed")
        stack = None if new else self._idle.get(origin.key)
        now = self.loop.time()
        while stack:
            conn = stack.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_S:
                conn.reused = True
                self._busy.add(conn)
                return conn
            conn.close()
        conn = await self._connect(origin, connect_s)
        self._busy.add(conn)
        return conn

    def release(self, conn: Connection) -> None:
        """Back to the pool if its answer was read to the end and the upstream keeps it alive."""
        self._busy.discard(conn)
        response, conn.response = conn.response, None
        if self._closed or conn.closed or response is None or not response.keep_alive or not response.at_eof():
            conn.close()
            return
        stack = self._idle.get(conn.origin.key)
        if stack is None:
            stack = self._idle[conn.origin.key] = []
        conn.idle_since = self.loop.time()
        stack.append(conn)
        # Amortised expiry: the oldest idle connection goes once it is past its keep-alive.
        if len(stack) > MAX_IDLE_PER_ORIGIN or conn.idle_since - stack[0].idle_since >= KEEPALIVE_S:
            stack.pop(0).close()

    def discard(self, conn: Connection) -> None:
        self._busy.discard(conn)
        conn.close()

    def forget(self, conn: Connection) -> None:
        stack = self._idle.get(conn.origin.key)
        if stack and conn in stack:
            stack.remove(conn)

    def close(self) -> None:
        self._closed = True
        for stack in self._idle.values():
            for conn in stack:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        self._busy.clear()

    async def _connect(self, origin: Origin, connect_s: float) -> Connection:
        async with asyncio.timeout(connect_s):  # the proxy's answer and the TLS handshake included
            proxy = origin.proxy
            if proxy is None:
                factory = functools.partial(Connection, self, origin)
                return await self._open(origin.host, origin.port, factory, origin.host if origin.tls else None)
            if origin.tls:
                return await self._tunnel(origin, proxy)
            return await self._reach(proxy, functools.partial(_ForwardedConnection, self, origin))

    async def _open(self, host: str, port: int, factory: Callable[[], _P], tls_host: str | None = None) -> _P:
        """A connection to the first of ``host``'s addresses that takes it; TLS, verified for
        ``tls_host``, unless that is None."""
        last: OSError | None = None
        for family, address in await self._resolve(host, port):
            try:
                _, protocol = await self.loop.create_connection(
                    factory,
                    address,
                    port,
                    family=family,
                    ssl=self._tls if tls_host is not None else None,
                    server_hostname=tls_host,
                )
                return protocol
            except OSError as exc:  # ssl.SSLError is an OSError
                last = exc
        raise last or OSError(f"{host} has no address")

    async def _tunnel(self, origin: Origin, proxy: Proxy) -> Connection:
        """TLS to ``origin`` inside a ``CONNECT`` tunnel through ``proxy``, the origin's
        certificate verified as on a direct connection."""
        answer = await self._reach(proxy, functools.partial(_TunnelAnswer, self.loop))
        transport = answer.transport
        try:
            transport.write(connect_request(origin, proxy))
            await answer.established
            conn = Connection(self, origin)
            tls = await self.loop.start_tls(transport, conn, self._tls, server_hostname=origin.host)
        except BaseException:
            transport.close()
            raise
        assert tls is not None  # typed Optional; set whenever the handshake completed
        conn.connection_made(tls)  # start_tls gives the protocol its transport without calling this
        return conn

    async def _reach(self, proxy: Proxy, factory: Callable[[], _P]) -> _P:
        """A connection to ``proxy``; failing that, a ``ProxyError`` caused by the OS's error."""
        try:
            return await self._open(proxy.host, proxy.port, factory)
        except OSError as exc:
            raise ProxyError("the egress proxy cannot be reached") from exc

    async def _resolve(self, host: str, port: int) -> list[tuple[int, str]]:
        """Addresses to try, cached for ``DNS_TTL_S`` so a burst of new connections asks DNS once."""
        now = self.loop.time()
        cached = self._addresses.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses: list[tuple[int, str]] = list(
            dict.fromkeys((int(family), str(sockaddr[0])) for family, _, _, _, sockaddr in infos)
        )
        self._addresses[(host, port)] = (now + DNS_TTL_S, addresses)
        return addresses
