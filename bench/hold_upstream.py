"""An upstream that holds streams open: one SSE chunk, then silence until the client goes away.

nginx cannot serve a stream that never ends, and the memory run needs thousands of them idle at
once. POST .../stream/... holds; any other POST gets the static completion.
Usage: python -m bench.hold_upstream PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web

from bench import payloads

FIRST_CHUNK = payloads.STREAM.split(b"\n\n", 1)[0] + b"\n\n"


async def handle(request: web.Request) -> web.StreamResponse:
    await request.read()
    if "/stream/" not in request.path:
        return web.Response(body=payloads.COMPLETION, content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(FIRST_CHUNK)
    await asyncio.Event().wait()  # held until the peer disconnects or the process is stopped
    return resp


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                backlog=4096, loop=uvloop.new_event_loop())
