"""Test-control endpoints under ``/_sim/`` (no auth): recorded requests and injected faults."""

from __future__ import annotations

from aiohttp import web

from gateway.simulator.faults import FaultError
from gateway.simulator.jsonbody import json_response, parse
from gateway.simulator.state import FAULTS, RECORDER

PREFIX = "/_sim/"


async def list_requests(request: web.Request) -> web.Response:
    return json_response(request.app[RECORDER].as_json())


async def clear_requests(request: web.Request) -> web.Response:
    request.app[RECORDER].clear()
    return web.Response(status=204)


async def list_faults(request: web.Request) -> web.Response:
    return json_response(request.app[FAULTS].as_json())


async def add_fault(request: web.Request) -> web.Response:
    try:
        fault = request.app[FAULTS].add(parse(await request.read()))
    except FaultError as exc:
        return json_response({"error": str(exc)}, status=400)
    except ValueError:
        return json_response({"error": "the body must be JSON"}, status=400)
    return json_response(fault.as_json(), status=201)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].clear()
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/_sim/requests", list_requests)
    app.router.add_delete("/_sim/requests", clear_requests)
    app.router.add_get("/_sim/faults", list_faults)
    app.router.add_post("/_sim/faults", add_fault)
    app.router.add_delete("/_sim/faults", clear_faults)
