"""Child processes on free loopback ports: start, wait until serving, stop by pid."""

from __future__ import annotations

import os
import resource
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


#: A command prefix the measured targets (floor, gateway) run under: callgrind for
#: ``python -m bench profile --instructions``. Empty: run them as they are.
UNDER_ENV = "BENCH_UNDER"


def under(cmd: Sequence[str]) -> list[str]:
    """``cmd`` run under ``BENCH_UNDER``, if set."""
    return [*shlex.split(os.environ.get(UNDER_ENV, "")), *cmd]


def start_timeout(seconds: float) -> float:
    """How long a measured target may take to listen: far longer under valgrind (~50x slower)."""
    return seconds * 15 if os.environ.get(UNDER_ENV) else seconds


class StartError(RuntimeError):
    """A target did not come up; the message says why (and holds the tail of its log)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE (soft and, as root, hard) so thousands of streams fit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            want = hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return max(soft, want)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM our own process group (workers included), then SIGKILL it if it lingers."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def spawn(
    name: str, cmd: Sequence[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> Proc:
    full_env = {**os.environ, **(env or {})}
    with log.open("ab") as out:
        # A new session per child: stop() can then signal exactly the processes this child started.
        popen = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, cwd=cwd, start_new_session=True,
        )
    return Proc(name, popen, log)


def wait_port(proc: Proc, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise StartError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    proc.stop()
    raise StartError(
        f"{proc.name} did not listen on {LOOPBACK}:{port} within {timeout:.0f}s:\n{proc.log_tail()}"
    )
