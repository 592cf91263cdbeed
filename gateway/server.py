"""Running the app: one process on uvloop, or N workers under ``gateway.supervisor``.

One serving process (``serve``):
- SIGTERM/SIGINT drain it: ``/readyz`` answers 503, the listening socket closes so new connections
  are refused, idle kept-alive connections close, requests and streams in flight get up to
  ``server.shutdown_timeout_s`` to finish (then they are cancelled), every completion hook runs,
  and the process exits 0.
- SIGHUP reloads the config (``gateway.reload``).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog
from aiohttp import web

from gateway.app import RUNTIME, Runtime, build_app
from gateway.config import Config, SimulatorSettings
from gateway.hardening import handler_settings, listen
from gateway.open_files import raise_to_hard_limit
from gateway.reload import ConfigFile, reload
from plugins import default_plugins, worker_exit_hooks

log = structlog.get_logger("gateway")

T = TypeVar("T")
#: How often a worker checks that its supervisor is still alive.
ORPHAN_CHECK_S = 1.0
#: The signals ``serve`` handles. A supervisor spawns workers with them blocked (the mask survives
#: exec), so one that arrives while a worker is still starting waits for its handler instead of
#: killing it with the default action; ``serve`` unblocks them once its handlers are installed.
HANDLED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def make_runner(app: web.Application, config: Config) -> web.AppRunner:
    # handler_cancellation: a client that disconnects cancels its handler, and so the upstream call.
    # The handler settings (header limits, keep-alive) reach aiohttp's own handler this way too.
    return web.AppRunner(
        app,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=aiohttp_shutdown_timeout(config.server.shutdown_timeout_s),
        **handler_settings(config.server),
    )


def aiohttp_shutdown_timeout(shutdown_timeout_s: float) -> float:
    """aiohttp 3.14's per-connection shutdown waits ``timeout`` for the handler, then cancels only the
    request's body and waits ``timeout`` again, so a stream that is just writing runs for 2 x
    ``timeout`` before its task is cancelled. Half of ``shutdown_timeout_s`` makes that the
    configured total (``tests/gateway/test_server.py`` measures it)."""
    return shutdown_timeout_s / 2


async def start_simulator(settings: SimulatorSettings) -> web.AppRunner:
    """The embedded simulator of ``simulator:``, so the shipped config needs no network at all."""
    from gateway.simulator import SimulatorConfig, build_simulator_app

    behaviour = SimulatorConfig(
        api_keys=frozenset({settings.api_key}), latency_per_token_s=settings.latency_per_token_s
    )
    runner = web.AppRunner(build_simulator_app(behaviour), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    log.info("simulator_serving", host=settings.host, port=settings.port)
    return runner


async def serve(config: Config, host: str, port: int, source: ConfigFile, *, supervisor_pid: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain. ``supervisor_pid``: this is one of its workers."""
    worker = supervisor_pid is not None
    open_files = raise_to_hard_limit()
    # Under a supervisor the simulator runs once, in the supervisor, not once per worker.
    simulator = await start_simulator(config.simulator) if config.simulator and not worker else None
    app = build_app(config, default_plugins)
    runtime = app[RUNTIME]
    runner = make_runner(app, config)
    await runner.setup()
    # Workers share the port: SO_REUSEPORT gives each its own accept queue and the kernel spreads
    # new connections across them.
    listener = await listen(runner, host, port, config.server, reuse_port=worker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads = _Reloads(runtime, source)
    loop.add_signal_handler(signal.SIGHUP, reloads.request)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
    watchdog = asyncio.ensure_future(_stop_when_orphaned(stop, supervisor_pid)) if supervisor_pid else None
    log.info(
        "serving",
        host=host,
        port=port,
        config=config.source,
        summary=config.summary(),
        worker=worker,
        open_files_limit=open_files,
    )

    await stop.wait()
    runtime.draining = True
    log.info("draining", timeout_s=config.server.shutdown_timeout_s)
    listener.close()  # new connections are refused from here on (other workers keep accepting)
    # aiohttp closes idle connections, lets requests in flight run for up to shutdown_timeout_s
    # (streams included: their writes carry on), cancels what is left, then runs cleanup_ctx, which
    # waits for every completion hook (Pipeline.drain) before closing the plugins.
    await runner.cleanup()
    await reloads.wait()
    if watchdog is not None:
        watchdog.cancel()
    if simulator is not None:
        await simulator.cleanup()
    log.info("stopped")


class _Reloads:
    """SIGHUPs run one reload at a time, in order; a drain waits for the one under way."""

    def __init__(self, runtime: Runtime, source: ConfigFile) -> None:
        self._runtime = runtime
        self._source = source
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    def request(self) -> None:
        task = asyncio.ensure_future(self._run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        async with self._lock:
            await reload(self._runtime, self._source)

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _stop_when_orphaned(stop: asyncio.Event, supervisor_pid: int) -> None:
    """A worker whose supervisor died (SIGKILL, OOM) drains instead of serving on unsupervised.

    The pid comes from the supervisor itself: one read here could already be the reaper's, if the
    supervisor died while this worker was starting."""
    while not stop.is_set():
        if os.getppid() != supervisor_pid:
            log.warning("supervisor_gone", supervisor_pid=supervisor_pid)
            stop.set()
            return
        await asyncio.sleep(ORPHAN_CHECK_S)


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result


def run(config: Config, host: str, port: int, source: ConfigFile, *, supervisor_pid: int | None = None) -> int:
    """Serve ``config``; with ``server.workers`` > 1, as a supervisor of that many worker processes."""
    if config.server.workers > 1 and supervisor_pid is None:
        from gateway.supervisor import Supervisor

        # The stdlib loop, not uvloop: it spawns with subprocess.Popen, which keeps the signal mask
        # across exec (HANDLED_SIGNALS), where libuv resets it. The supervisor has no hot path.
        return asyncio.run(Supervisor(config, source, host, port, worker_exit_hooks(config)).run())
    run_loop(serve(config, host, port, source, supervisor_pid=supervisor_pid))
    return 0
