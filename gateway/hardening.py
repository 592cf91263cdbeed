"""Connection-level protections the gateway adds to aiohttp's HTTP server.

What aiohttp 3.14 already does, and is only configured here (``handler_settings``):
- header limits: ``max_line_size`` / ``max_field_size`` (the request line and each header) and
  ``max_headers`` (the count); its parser answers 400 past them;
- ``keepalive_timeout``: an idle kept-alive connection is closed. The timer is also armed when a
  connection opens, but it is not restarted by incoming bytes, so on its own it is a (long) total
  deadline, not a header deadline;
- request smuggling, mostly: both request parsers (llhttp in strict mode, and the pure-Python one
  used with ``AIOHTTP_NO_EXTENSIONS``) refuse Content-Length with Transfer-Encoding, two
  Transfer-Encoding or Content-Length headers, and an unknown coding, with 400.

What aiohttp does not do, and this module adds:
- a deadline for a request's line and headers (slowloris), in ``HeaderDeadlineHandler``. A client
  that opens a connection, or starts a new request on a kept-alive one, must finish its headers
  within ``server.header_timeout_s``; otherwise it gets 408 and the connection is closed. The body
  has its own deadline in the pipeline (``server.body_timeout_s``);
- ``strictly_framed``: Transfer-Encoding must be exactly ``chunked``. Both parsers accept
  ``gzip, chunked`` (and pass the body on undecoded), and the pure-Python one also accepts
  ``chunked, chunked``; a proxy in front may frame such a request differently, so it is refused.

The seam: ``listen`` creates the listening socket itself with a protocol factory that builds
``HeaderDeadlineHandler`` (a ``web.RequestHandler``) for the runner's ``web.Server``, exactly as
``web.Server.__call__`` would build a plain one, and wraps the app's request handler with
``strictly_framed``. The handler uses four of aiohttp's private attributes (``_messages``,
``_waiter``, ``_request_in_progress``, ``_request_handler``); ``tests/test_hardening.py``
drives it with raw sockets so an aiohttp upgrade that changes them fails loudly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from gateway.config import ServerConfig

#: Sent when the header deadline passes; the connection closes right after.
_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
#: Room in the kernel's accept queue for a burst of new connections per worker.
BACKLOG = 2048


def handler_settings(server: ServerConfig) -> dict[str, Any]:
    """Keyword arguments for aiohttp's ``RequestHandler`` (also accepted by ``web.AppRunner``)."""
    return {
        "keepalive_timeout": server.keepalive_timeout_s,
        "max_line_size": server.max_header_line_bytes,
        "max_field_size": server.max_header_line_bytes,
        "max_headers": server.max_headers,
    }


RequestHandlerFn = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def strictly_framed(handler: RequestHandlerFn) -> RequestHandlerFn:
    """``handler``, except that a request whose Transfer-Encoding is present and not exactly
    ``chunked`` gets 400 and a closed connection. A plain function returning the awaitable: no
    coroutine frame (or aiohttp middleware chain) is added to every request."""

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        headers = request.headers
        if hdrs.TRANSFER_ENCODING in headers:
            codings = headers.getall(hdrs.TRANSFER_ENCODING)
            if len(codings) > 1 or codings[0].strip().lower() != "chunked":
                return _misframed()
        return handler(request)

    return handle


async def _misframed() -> web.StreamResponse:
    response = web.json_response(
        {
            "error": {
                "message": "Transfer-Encoding must be exactly 'chunked'.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_transfer_encoding",
            }
        },
        status=400,
    )
    response.force_close()  # whatever follows on this connection is not to be trusted
    return response


class HeaderDeadlineHandler(web.RequestHandler):
    """aiohttp's request handler with a deadline for each request's line and headers."""

    __slots__ = ("_header_deadline", "_header_timer")

    def __init__(self, manager: web.Server, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        assert self._request_handler is not None
        self._request_handler = strictly_framed(self._request_handler)
        self._header_deadline = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # The first request's headers are due within the deadline of the connection opening.
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._waiting_for_request():
            # The first bytes of a new request on a kept-alive connection: its headers are due now.
            self._arm()
        super().data_received(data)
        if self._header_timer is not None and self._messages:
            # The parser has a complete request (or a parse error to answer): headers are in.
            self._disarm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting_for_request(self) -> bool:
        waiter = self._waiter
        return waiter is not None and not waiter.done() and not self._messages

    def _arm(self) -> None:
        self._header_timer = self._loop.call_later(self._header_deadline, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._messages or self._request_in_progress or self.transport is None:
            return
        self.transport.write(_REQUEST_TIMEOUT)
        self.force_close()


async def listen(
    runner: web.AppRunner, host: str, port: int, server: ServerConfig, *, reuse_port: bool
) -> asyncio.Server:
    """Listen on ``host:port`` with ``HeaderDeadlineHandler`` connections served by ``runner``.

    Used instead of ``web.TCPSite``, whose protocol factory is aiohttp's own handler. Close the
    returned server to stop accepting (the first step of a drain), then ``runner.cleanup()``.
    """
    manager = runner.server
    if manager is None:
        raise RuntimeError("runner.setup() must run before listen()")
    loop = asyncio.get_running_loop()
    settings = handler_settings(server)

    def connection() -> HeaderDeadlineHandler:
        return HeaderDeadlineHandler(manager, loop=loop, header_timeout_s=server.header_timeout_s, **settings)

    return await loop.create_server(connection, host, port, reuse_port=reuse_port, backlog=BACKLOG)
