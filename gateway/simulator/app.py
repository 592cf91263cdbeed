"""The simulator application: routes for OpenAI, Azure OpenAI and Foundry, plus ``/_sim/`` controls."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from gateway.simulator import control
from gateway.simulator.behaviour import SimulatorConfig
from gateway.simulator.dialects import Dialect, Operation
from gateway.simulator.faults import FaultBook
from gateway.simulator.handlers import (
    Handler,
    dialect_of_path,
    foundry_info,
    not_found,
    openai_model,
    openai_models,
    operation_handler,
)
from gateway.simulator.ratelimit import RollingWindowLimiter
from gateway.simulator.recorder import Recorder
from gateway.simulator.state import CONFIG, FAULTS, LIMITER, RECORDER, STOPPING


@web.middleware
async def record_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(control.PREFIX):
        await request.app[RECORDER].record(request)
    return await handler(request)


async def add_request_ids(request: web.Request, response: web.StreamResponse) -> None:
    request_id = uuid.uuid4().hex
    response.headers["x-request-id"] = request_id
    path = request.path
    if not path.startswith(control.PREFIX) and dialect_of_path(path) is not Dialect.OPENAI:
        response.headers["apim-request-id"] = str(uuid.UUID(request_id))


async def signal_stopping(app: web.Application) -> None:
    app[STOPPING].set()


def _add_api_routes(app: web.Application) -> None:
    router = app.router
    for operation in Operation:
        router.add_post(f"/v1/{operation.value}", operation_handler(Dialect.OPENAI, operation))
        router.add_post(
            f"/openai/deployments/{{deployment}}/{operation.value}",
            operation_handler(Dialect.AZURE, operation),
        )
    router.add_get("/v1/models", openai_models)
    router.add_get("/v1/models/{model:.+}", openai_model)
    for prefix in ("", "/models"):
        for operation in (Operation.CHAT, Operation.EMBEDDINGS):  # Foundry has no legacy completions
            router.add_post(f"{prefix}/{operation.value}", operation_handler(Dialect.FOUNDRY, operation))
        router.add_get(f"{prefix}/info", foundry_info)
    router.add_route("*", "/{tail:.*}", not_found)


def build_simulator_app(config: SimulatorConfig) -> web.Application:
    """An aiohttp app that answers like OpenAI, Azure OpenAI and Azure AI Foundry would."""
    app = web.Application(middlewares=[record_requests])
    app[CONFIG] = config
    app[RECORDER] = Recorder()
    app[FAULTS] = FaultBook()
    app[LIMITER] = RollingWindowLimiter(config.rpm, config.tpm, config.rate_window_s)
    app[STOPPING] = asyncio.Event()
    app.on_response_prepare.append(add_request_ids)
    app.on_shutdown.append(signal_stopping)
    control.add_routes(app)
    _add_api_routes(app)
    return app


async def run_simulator(host: str, port: int, config: SimulatorConfig) -> None:
    """Serve the simulator on ``host:port`` until cancelled."""
    runner = web.AppRunner(build_simulator_app(config), shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
