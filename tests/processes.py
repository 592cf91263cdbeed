"""Real processes for tests: ``gateway run`` and ``redis-server`` as subprocesses.

The gateway's stdout (its structlog JSON lines) is collected on a thread, so a test can wait for a
log event and count access lines while its own event loop serves the upstream.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.redis_servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent

LogLine = dict[str, Any]


class GatewayProcess:
    """``gateway run --config PATH`` in its own session (so its workers can be signalled as one)."""

    def __init__(
        self, config: Path, port: int, env: dict[str, str] | None = None, *, open_files: int | None = None
    ) -> None:
        """``open_files``: the process's hard and soft ``RLIMIT_NOFILE``, as a tight host sets them."""
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            # util-linux's prlimit sets the limit for the process it runs (preexec_fn is not thread-safe).
            ([] if open_files is None else ["prlimit", f"--nofile={open_files}:{open_files}", "--"])
            + [sys.executable, "-m", "gateway", "run", "--config", str(config)],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.output.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def logs(self) -> list[LogLine]:
        lines = []
        for text in list(self.output):
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict):
                lines.append(line)
        return lines

    def events(self, name: str) -> list[LogLine]:
        return [line for line in self.logs if line.get("event") == name]

    def text(self) -> str:
        return "\n".join(self.output)

    async def wait_for(
        self, predicate: Callable[[], Any], within_s: float = 20, what: str = "", *, running: bool = True
    ) -> Any:
        """``predicate()`` once true; ``running``: fail as soon as the main process has exited."""
        deadline = time.monotonic() + within_s
        while True:
            result = predicate()
            if result:
                return result
            if running and self.proc.poll() is not None and not predicate():
                raise AssertionError(f"gateway exited ({self.proc.returncode}) waiting for {what}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.text()}")
            await asyncio.sleep(0.05)

    async def wait_event(
        self, name: str, count: int = 1, within_s: float = 20, *, running: bool = True
    ) -> list[LogLine]:
        found: list[LogLine] = await self.wait_for(
            lambda: len(self.events(name)) >= count and self.events(name),
            within_s,
            f"{count} x {name!r}",
            running=running,
        )
        return found

    async def wait_ready(self, within_s: float = 30) -> None:
        async def ready() -> bool:
            try:
                async with aiohttp.ClientSession() as session, session.get(f"{self.url}/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        deadline = time.monotonic() + within_s
        while not await ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited ({self.proc.returncode}):\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway not ready:\n{self.text()}")
            await asyncio.sleep(0.1)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def exit_code(self, within_s: float = 30) -> int:
        await self.wait_for(lambda: self.proc.poll() is not None, within_s, "exit")
        self._reader.join(timeout=5)
        return self.proc.returncode

    def stop(self) -> None:
        """Cleanup: whatever state the test left it in, no process of this session survives."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)


@contextmanager
def gateway_process(
    config: Path, port: int, env: dict[str, str] | None = None, *, open_files: int | None = None
) -> Iterator[GatewayProcess]:
    process = GatewayProcess(config, port, env, open_files=open_files)
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def redis_server(port: int) -> Iterator[str]:
    """A throwaway redis-server on ``port``; yields its URL."""
    server = RedisServer(port).start()
    try:
        yield server.url
    finally:
        server.stop()


def access_lines(process: GatewayProcess) -> list[LogLine]:
    return process.events("request")
