"""The things being measured. Each starts on free loopback ports and says how a client calls it.

Add a target by subclassing Target and registering it in TARGETS; the runner and the report pick it up.
"""

from __future__ import annotations

import shutil
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from bench import gateway, nginx, payloads, peers
from bench.procs import LOOPBACK, Proc, StartError, free_port, spawn, start_timeout, under, wait_port

CLIENT_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {payloads.CLIENT_KEY}"}


@dataclass(frozen=True)
class Endpoint:
    port: int
    json_path: str
    stream_path: str  # the gateway routes streams by body model, so its stream path is the JSON path
    headers: Mapping[str, str] = field(default_factory=lambda: dict(CLIENT_HEADERS))

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"


@dataclass
class Context:
    tmp: Path
    upstream_port: int
    nginx_workers: int = 1

    @property
    def upstream(self) -> str:
        return f"http://{LOOPBACK}:{self.upstream_port}"


class Target(ABC):
    name: ClassVar[str]
    label: ClassVar[str]

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    @abstractmethod
    def start(self, ctx: Context) -> Endpoint: ...

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


class Direct(Target):
    name, label = "direct", "upstream directly (static nginx)"

    def start(self, ctx: Context) -> Endpoint:
        return Endpoint(ctx.upstream_port, payloads.JSON_PATH, payloads.STREAM_PATH)


class NginxProxy(Target):
    name, label = "nginx", "nginx proxy_pass (keepalive upstream)"

    def start(self, ctx: Context) -> Endpoint:
        port = free_port()
        conf = nginx.proxy_conf(ctx.tmp, port, ctx.upstream_port, ctx.nginx_workers)
        self.procs.append(nginx.start(ctx.tmp, "proxy", conf, port))
        return Endpoint(port, payloads.JSON_PATH, payloads.STREAM_PATH)


class Floor(Target):
    name, label = "floor", "bare aiohttp pass-through (floor)"

    def start(self, ctx: Context) -> Endpoint:
        port = free_port()
        proc = spawn("floor", under([sys.executable, "-m", "bench.floor_proxy", str(port), ctx.upstream]),
                     ctx.tmp / "floor.log", cwd=Path(__file__).resolve().parent.parent)
        self.procs.append(proc)
        wait_port(proc, port, start_timeout(20))
        return Endpoint(port, payloads.JSON_PATH, payloads.STREAM_PATH)


def start_redis(tmp: Path) -> tuple[Proc, int]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise StartError("redis-server is not installed (`make redis-server` installs it)")
    port = free_port()
    proc = spawn("redis", [exe, "--bind", LOOPBACK, "--port", str(port), "--save", "", "--appendonly", "no",
                           "--dir", str(tmp)], tmp / f"redis-{port}.log")
    wait_port(proc, port)
    return proc, port


class Gateway(Target):
    name, label = "gateway", "gateway, memory:// store, 1 worker"
    store: ClassVar[str] = "memory"
    workers: ClassVar[str] = "1"

    def start(self, ctx: Context) -> Endpoint:
        store_url = "memory://"
        if self.store == "redis":
            proc, redis_port = start_redis(ctx.tmp)
            self.procs.append(proc)
            store_url = f"redis://{LOOPBACK}:{redis_port}/0"
        port = free_port()
        cfg = gateway.config(port, ctx.upstream + "/v1", ctx.upstream + "/stream/v1", store_url, self.workers)
        self.procs.append(gateway.start(ctx.tmp, self.name, cfg))
        return Endpoint(port, payloads.JSON_PATH, payloads.JSON_PATH)


class GatewayRedis(Gateway):
    name, label = "gateway-redis", "gateway, redis:// limiter, 1 worker"
    store = "redis"


class GatewayWorkers(Gateway):
    # memory:// is per process, so more than one worker needs the shared Redis store.
    name, label = "gateway-workers", "gateway, redis:// limiter, workers auto"
    store, workers = "redis", "auto"


class LiteLLM(Target):
    name, label = "litellm", "LiteLLM proxy, 1 worker"

    def start(self, ctx: Context) -> Endpoint:
        port = free_port()
        self.procs.append(peers.start(ctx.tmp, port, ctx.upstream + "/v1", ctx.upstream + "/stream/v1"))
        headers = {**CLIENT_HEADERS, "Authorization": f"Bearer {peers.MASTER_KEY}"}
        return Endpoint(port, payloads.JSON_PATH, payloads.JSON_PATH, headers)


TARGETS: dict[str, type[Target]] = {
    t.name: t for t in (Direct, NginxProxy, Floor, Gateway, GatewayRedis, GatewayWorkers, LiteLLM)
}
DEFAULT = ("direct", "nginx", "floor", "gateway", "gateway-redis")
PEERS = ("litellm",)


def probe(endpoint: Endpoint, timeout: float = 20.0) -> None:
    """One JSON and one streaming call must succeed before any load is applied."""
    checks = ((endpoint.json_path, payloads.JSON_BODY, b'"chat.completion"'),
              (endpoint.stream_path, payloads.STREAM_BODY, b"data: [DONE]"))
    deadline = time.monotonic() + timeout
    for path, body, expect in checks:
        while True:
            req = urllib.request.Request(endpoint.url(path), data=body, headers=dict(endpoint.headers))
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    got = resp.read()
                if expect in got:
                    break
                problem = f"200 without {expect.decode()!r}: {got[:300]!r}"
            except urllib.error.HTTPError as exc:
                problem = f"HTTP {exc.code}: {exc.read()[:300]!r}"
                if exc.code < 500:  # a 4xx will not fix itself by waiting
                    raise StartError(f"POST {path} failed: {problem}") from exc
            except OSError as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                raise StartError(f"POST {path} failed: {problem}")
            time.sleep(0.5)
