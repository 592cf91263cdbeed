"""The floor for this stack: the least an aiohttp + uvloop pass-through can do, nothing more.

Reads the request body, POSTs it to the upstream over one shared ClientSession, and returns the
body (or forwards the stream chunk by chunk). No auth, no parsing, no limits: the gateway's
throughput is judged as a ratio of this one.  Usage: python -m bench.floor_proxy PORT UPSTREAM_URL
"""

import sys
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def session_ctx(app: web.Application) -> AsyncIterator[None]:
    # limit=0: no pool cap, so thousands of idle streams are not queued behind 100 connections.
    app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
    yield
    await app[SESSION].close()


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {"Content-Type": "application/json", "Authorization": "Bearer bench-upstream-key"}
    async with request.app[SESSION].post(request.app[UPSTREAM] + request.path, data=body,
                                         headers=headers) as up:
        ctype = up.headers.get("Content-Type", "application/json")
        if not ctype.startswith("text/event-stream"):
            return web.Response(body=await up.read(), status=up.status, headers={"Content-Type": ctype})
        resp = web.StreamResponse(status=up.status, headers={"Content-Type": ctype})
        await resp.prepare(request)
        async for chunk in up.content.iter_any():
            await resp.write(chunk)
        await resp.write_eof()
        return resp


if __name__ == "__main__":
    app = web.Application()
    app[UPSTREAM] = sys.argv[2].rstrip("/")
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/{tail:.*}", forward)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                loop=uvloop.new_event_loop())
