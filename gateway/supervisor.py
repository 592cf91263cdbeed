"""The supervisor of ``server.workers`` > 1: spawns the worker processes and keeps them running.

Each worker is ``gateway run … --worker-of <supervisor pid>``: the same command an operator runs, re-run as a
child (``subprocess``, not ``multiprocessing``). That way a worker loads the config exactly as a
single process does (``${ENV}`` included), owns its event loop and signal handlers from its first
line, and writes its log lines to the supervisor's stdout; nothing is pickled or forked from a
process that already runs an event loop, and there is no ``multiprocessing`` resource tracker or
atexit joining to reason about when a worker is SIGKILLed.

The workers listen on the same port with SO_REUSEPORT. The supervisor:
- restarts a worker that exits while it is not stopping, after a backoff that doubles with each
  quick failure (a crash loop waits up to ``BACKOFF_MAX_S`` between attempts instead of spinning);
- forwards SIGTERM/SIGINT (drain) and SIGHUP (reload, after validating the file once itself so a
  broken file is reported once, not once per worker) to every worker;
- runs the embedded simulator, if configured, once;
- calls ``on_worker_exit`` hooks with a dead worker's pid (prometheus-client multiprocess mode
  needs ``mark_process_dead``), with ``PROMETHEUS_MULTIPROC_DIR`` set for the workers;
- exits 0 once every worker drained and exited 0.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable

import structlog

from gateway.config import Config
from gateway.reload import ConfigFile
from gateway.server import HANDLED_SIGNALS, start_simulator

log = structlog.get_logger("gateway.supervisor")

WorkerExitHook = Callable[[int], None]

#: The first restart waits this long; each quick failure doubles it, up to ``BACKOFF_MAX_S``.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 30.0
#: A worker that ran this long before exiting counts as healthy: its restart starts the backoff over.
STABLE_AFTER_S = 10.0
#: After SIGTERM, workers get this much beyond shutdown_timeout_s (for the cancelled requests'
#: completion hooks and the plugins' close) before they are killed.
KILL_GRACE_S = 10.0
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def restart_delay(quick_failures: int) -> float:
    if quick_failures <= 1:
        return BACKOFF_FIRST_S
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (quick_failures - 1)))


class Supervisor:
    def __init__(
        self,
        config: Config,
        source: ConfigFile,
        host: str,
        port: int,
        on_worker_exit: list[WorkerExitHook] | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.host = host
        self.port = port
        #: Called with the pid of every worker that exits, however it exits.
        self.on_worker_exit: list[WorkerExitHook] = list(on_worker_exit or [])
        self._live: dict[int, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._spawning = asyncio.Lock()

    def worker_command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--config",
            self.source.path,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.config.server.workers),
            "--worker-of",
            str(os.getpid()),
        ]

    async def run(self) -> int:
        problem = _port_problem(self.host, self.port)
        if problem:
            log.error("cannot_listen", host=self.host, port=self.port, error=problem)
            return 1
        created_dir = _ensure_multiproc_dir()
        simulator = await start_simulator(self.config.simulator) if self.config.simulator else None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        workers = self.config.server.workers
        log.info("supervising", workers=workers, host=self.host, port=self.port, config=self.source.path)
        slots = [asyncio.ensure_future(self._keep(slot)) for slot in range(workers)]
        try:
            await self._stopping.wait()
            deadline = self.config.server.shutdown_timeout_s + KILL_GRACE_S
            _, pending = await asyncio.wait(slots, timeout=deadline)
            if pending:
                log.error("workers_did_not_drain", worker_pids=[p.pid for p in self._live.values()], after_s=deadline)
                for process in list(self._live.values()):
                    process.kill()
                await asyncio.wait(pending)
            codes = [slot.result() for slot in slots]
        finally:
            for slot in slots:
                slot.cancel()
            if simulator is not None:
                await simulator.cleanup()
            if created_dir:
                shutil.rmtree(created_dir, ignore_errors=True)
        log.info("supervisor_stopped", worker_exit_codes=codes)
        return 0 if all(code == 0 for code in codes) else 1

    async def _keep(self, slot: int) -> int:
        """Keep worker ``slot`` running until the supervisor stops; its last exit code."""
        loop = asyncio.get_running_loop()
        quick_failures = 0
        while True:
            process = await self._spawn()
            self._live[slot] = process
            if self._stopping.is_set():  # SIGTERM arrived while it was being spawned
                process.send_signal(signal.SIGTERM)
            log.info("worker_started", slot=slot, worker_pid=process.pid)
            started = loop.time()
            code = await process.wait()
            del self._live[slot]
            self._exited(process.pid)
            if self._stopping.is_set():
                log.info("worker_stopped", slot=slot, worker_pid=process.pid, exit_code=code)
                return code
            quick_failures = 0 if loop.time() - started >= STABLE_AFTER_S else quick_failures + 1
            delay = restart_delay(quick_failures)
            log.warning("worker_exited", slot=slot, worker_pid=process.pid, exit_code=code, restart_in_s=delay)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                continue
            return code

    async def _spawn(self) -> asyncio.subprocess.Process:
        # The handled signals are blocked in this thread while it forks, so the worker inherits them
        # blocked until it can handle them (``gateway.server.serve``); the supervisor's own wait
        # until the fork is done. One spawn at a time: two overlapping ones would restore each
        # other's masks in the wrong order.
        async with self._spawning:
            held = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
            try:
                return await asyncio.create_subprocess_exec(*self.worker_command())
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _exited(self, pid: int) -> None:
        for hook in self.on_worker_exit:
            try:
                hook(pid)
            except Exception:
                log.exception("worker_exit_hook_failed", worker_pid=pid)

    def _stop(self) -> None:
        if not self._stopping.is_set():
            log.info("draining_workers", worker_pids=[p.pid for p in self._live.values()])
        self._stopping.set()
        self._signal_workers(signal.SIGTERM)

    def _reload(self) -> None:
        if self.source.validate() is None:  # logged config_reload_failed with every error
            return
        log.info("reload_forwarded", worker_pids=[p.pid for p in self._live.values()])
        self._signal_workers(signal.SIGHUP)

    def _signal_workers(self, sig: signal.Signals) -> None:
        for process in list(self._live.values()):
            if process.returncode is None:
                try:
                    process.send_signal(sig)
                except ProcessLookupError:
                    pass  # exited a moment ago; _keep sees it


def _port_problem(host: str, port: int) -> str | None:
    """Why the workers could not listen on ``host:port`` (say, a process without SO_REUSEPORT holds
    it), found once up front instead of through a crash loop of workers."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind(address)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _ensure_multiproc_dir() -> str | None:
    """Give prometheus-client's multiprocess mode a directory; the one created is returned, to remove."""
    if os.environ.get(MULTIPROC_ENV):
        return None  # the operator's own (say, an emptyDir volume): theirs to manage
    path = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ[MULTIPROC_ENV] = path  # inherited by every worker spawned from here on
    return path
