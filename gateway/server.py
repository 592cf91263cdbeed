"""Running the app: one process on uvloop, graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from gateway.app import RUNTIME, build_app
from gateway.config import Config, SimulatorSettings
from plugins import default_plugins

log = structlog.get_logger("gateway")


def make_runner(app: web.Application, config: Config) -> web.AppRunner:
    # handler_cancellation: a client that disconnects cancels its handler, and so the upstream call.
    return web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=config.server.shutdown_timeout_s,
    )


async def start_simulator(settings: SimulatorSettings) -> web.AppRunner:
    """The embedded simulator of ``simulator:``, so the shipped config needs no network at all."""
    from gateway.simulator import SimulatorConfig, build_simulator_app

    behaviour = SimulatorConfig(
        api_keys=frozenset({settings.api_key}), latency_per_token_s=settings.latency_per_token_s
    )
    runner = web.AppRunner(build_simulator_app(behaviour), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    log.info("simulator_serving", host=settings.host, port=settings.port)
    return runner


async def serve(config: Config, host: str, port: int) -> None:
    simulator = await start_simulator(config.simulator) if config.simulator else None
    app = build_app(config, default_plugins)
    runner = make_runner(app, config)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=config.server.workers > 1, backlog=2048)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving", host=host, port=port, config=config.source, summary=config.summary())
    await stop.wait()
    app[RUNTIME].draining = True
    log.info("draining", timeout_s=config.server.shutdown_timeout_s)
    await runner.cleanup()
    if simulator is not None:
        await simulator.cleanup()
    log.info("stopped")


def run(config: Config, host: str, port: int) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        asyncio.run(serve(config, host, port))
    else:
        uvloop.run(serve(config, host, port))
