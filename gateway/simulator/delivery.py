"""Sending answers over the wire: SSE frames one write at a time, pauses, drops and hangs.

Every wait ends early when the simulator shuts down, and a client that goes away mid-stream
just ends the stream (no traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from aiohttp import web

_DISCONNECT_POLL_S = 0.05


async def nap(seconds: float, stopping: asyncio.Event) -> bool:
    """Sleep ``seconds``; True when the simulator started shutting down meanwhile."""
    if seconds <= 0:
        return stopping.is_set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def hang(request: web.Request, stopping: asyncio.Event) -> web.Response:
    """Never answer: wait until the client gives up or the simulator stops."""
    while not client_gone(request) and not await nap(_DISCONNECT_POLL_S, stopping):
        pass
    return web.Response(status=503, text="the simulator stopped while hanging")


def abort_connection(request: web.Request) -> web.Response:
    """Close the connection abruptly, without finishing any response."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp cannot send this response on a closed connection, and it says nothing about that.
    return web.Response(status=502)


async def send_stream(
    request: web.Request,
    frames: Sequence[bytes],
    headers: Mapping[str, str],
    stopping: asyncio.Event,
    *,
    gap_s: float = 0.0,
    drop_after: int | None = None,
) -> web.StreamResponse:
    """Send ``frames`` as ``text/event-stream``, each written (and so flushed) on its own.

    ``gap_s`` is slept between frames; with ``drop_after`` the connection is aborted after that
    many frames, so the client sees a stream cut off without ``[DONE]``.
    """
    response = web.StreamResponse(headers=headers)
    response.content_type = "text/event-stream"
    response.headers["Cache-Control"] = "no-cache"
    try:
        await response.prepare(request)
        for index, frame in enumerate(frames):
            if drop_after is not None and index >= drop_after:
                abort_connection(request)
                return response
            if index and await nap(gap_s, stopping):
                abort_connection(request)
                return response
            await response.write(frame)
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away; nothing more to send
    return response
