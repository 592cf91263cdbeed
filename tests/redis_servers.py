"""Real redis-server processes for the tests: a single server, and a 3-node Redis Cluster.

Each server runs on a free loopback port with no persistence, in its own temporary directory,
and is stopped (and its directory removed) when the test session ends. A missing redis-server
is a failure with instructions, never a skip: the suite's claims are about real Redis.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

STARTUP_TIMEOUT_S = 10.0


def require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(
            f"{binary} is not installed; the store tests run a real Redis. Install it with "
            "`sudo apt-get install redis-server` (Debian/Ubuntu) or `brew install redis` (macOS), "
            "or run `make test`, which installs it when running as root.",
            pytrace=False,
        )
    return path


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster: bool = False) -> int:
    """A free loopback port; a cluster node also needs port + 10000 (its bus) free and <= 65535."""
    if not cluster:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port
    for _ in range(200):
        port = random.randrange(20_000, 45_000)
        if _bindable(port) and _bindable(port + 10_000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _cli(port: int, *args: str, timeout: float = 5.0) -> str:
    done = subprocess.run(
        [require("redis-cli"), "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.stdout + done.stderr


class RedisServer:
    """One ``redis-server`` on a fixed port: can be killed, frozen and restarted on that port."""

    def __init__(self, port: int | None = None, *, cluster: bool = False) -> None:
        self.port = port or free_port(cluster=cluster)
        self.cluster = cluster
        self.dir = Path(tempfile.mkdtemp(prefix=f"redis-{self.port}-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        args = [
            require("redis-server"),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", str(self.dir / "nodes.conf")]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "PONG" not in _cli(self.port, "ping"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")
            time.sleep(0.02)
        return self

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: the process is gone at once, connections are reset."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def freeze(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing ever answers."""
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterServers:
    """Three primaries, no replicas: every slot served, keys spread over three processes."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [RedisServer(cluster=True) for _ in range(size)]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        out = _cli(
            self.nodes[0].port, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes",
            timeout=30,
        )  # fmt: skip
        if "[OK] All 16384 slots covered" not in out:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out}")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not all("cluster_state:ok" in _cli(n.port, "cluster", "info") for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)
        return self

    def port_of(self, key: str) -> int:
        """The port of the node that serves ``key``'s slot."""
        slot = int(_cli(self.nodes[0].port, "cluster", "keyslot", key))
        for entry in json_slots(_cli(self.nodes[0].port, "--json", "cluster", "slots")):
            if entry[0] <= slot <= entry[1]:
                return int(entry[2][1])
        raise LookupError(f"no node serves slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def json_slots(text: str) -> list[list[Any]]:
    return list(json.loads(text))


# -- fixtures (registered for the whole suite by ``pytest_plugins`` in tests/conftest.py) ----------

_Servers = TypeVar("_Servers", RedisServer, RedisClusterServers)


def _running(servers: _Servers) -> Iterator[_Servers]:
    try:
        yield servers.start()
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server shared by the session; tests keep apart by using their own team names."""
    yield from _running(RedisServer())


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    yield from _running(RedisClusterServers())


@pytest.fixture
def disposable_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, free to be killed, frozen and restarted."""
    yield from _running(RedisServer())


@pytest.fixture
def disposable_cluster() -> Iterator[RedisClusterServers]:
    """A Redis Cluster of this test's own, whose nodes may be killed and restarted."""
    yield from _running(RedisClusterServers())
