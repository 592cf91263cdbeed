"""How the harness starts the gateway: a generated gateway.yaml and the `gateway run` command line."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from bench import payloads
from bench.procs import LOOPBACK, Proc, StartError, spawn, start_timeout, under, wait_port

# Limits far above anything a 2-core run reaches: the limiter does its full work but never says 429.
_UNREACHABLE_LIMITS = {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000}


def executable() -> Path:
    """BENCH_GATEWAY overrides; otherwise the `gateway` script next to this interpreter (the venv's)."""
    if env := os.environ.get("BENCH_GATEWAY"):
        return Path(env)
    beside = Path(sys.executable).parent / "gateway"
    return beside if beside.exists() else Path(shutil.which("gateway") or beside)


def config(
    port: int, upstream: str, stream_upstream: str, store_url: str, workers: str = "1"
) -> dict[str, Any]:
    """A pool of two openai deployments per upstream route (routing does real work: a weighted
    choice on every request); the stream route gets its own model name."""
    deployment = {"dialect": "openai", "model": payloads.MODEL, "api_key": payloads.UPSTREAM_KEY}
    return {
        "server": {"host": LOOPBACK, "port": port, "workers": int(workers) if workers.isdigit() else workers},
        "store": {"url": store_url},
        "deployments": [
            {"name": "bench-upstream", "url": upstream, **deployment},
            {"name": "bench-upstream-b", "url": upstream, **deployment},
            {"name": "bench-upstream-stream", "url": stream_upstream, **deployment},
            {"name": "bench-upstream-stream-b", "url": stream_upstream, **deployment},
        ],
        "models": {
            payloads.MODEL: {"deployments": ["bench-upstream", "bench-upstream-b"]},
            payloads.STREAM_MODEL: {"deployments": ["bench-upstream-stream", "bench-upstream-stream-b"]},
        },
        "teams": {"bench": {"keys": [payloads.CLIENT_KEY], "limits": dict(_UNREACHABLE_LIMITS)}},
    }


def command(config_path: Path, port: int, workers: str = "1") -> list[str]:
    args = ["run", "--config", str(config_path), "--port", str(port)]
    if workers != "1":
        return [str(executable()), *args, "--workers", workers]
    if without := os.environ.get("BENCH_WITHOUT"):  # a plugin's cost, by leaving it out (one worker)
        return [sys.executable, "-m", "bench.without_plugins", without, *args]
    return [str(executable()), *args]


def start(tmp: Path, name: str, cfg: dict[str, Any], timeout: float = 30.0) -> Proc:
    exe = executable()
    if not exe.exists():
        raise StartError(f"no gateway CLI at {exe} (the gateway has not landed, or the venv lacks it)")
    port = int(cfg["server"]["port"])
    workers = str(cfg["server"]["workers"])
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # Access logs go to a file, as in production. Workers share metrics through files in a private
    # directory (the supervisor would make one; this one is removed with the run's tmp). One worker
    # keeps its metrics in memory, as `gateway run` does in production.
    env = {}
    if workers != "1":
        metrics_dir = tmp / f"{name}-metrics"
        metrics_dir.mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    proc = spawn(name, under(command(path, port, workers)), tmp / f"{name}.log", env=env)
    wait_port(proc, port, start_timeout(timeout))
    return proc
