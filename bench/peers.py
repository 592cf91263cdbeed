"""LiteLLM proxy as a peer (`PEERS=1`): its own throwaway venv, configured for the same upstream."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bench import payloads
from bench.procs import LOOPBACK, Proc, StartError, spawn, wait_port

VENV = Path(__file__).resolve().parent / ".peers-venv"
MASTER_KEY = "sk-bench-key"  # LiteLLM insists its master key starts with sk-


def ensure_litellm() -> Path:
    exe = VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing litellm[proxy] into {VENV} (once)", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "litellm[proxy]"],
                       check=True)
    except subprocess.CalledProcessError as exc:
        raise StartError(f"could not install litellm[proxy]: {exc}") from exc
    return exe


def config(upstream: str, stream_upstream: str) -> dict[str, Any]:
    def entry(name: str, base: str) -> dict[str, Any]:
        return {"model_name": name, "litellm_params": {
            "model": f"openai/{payloads.MODEL}", "api_base": base, "api_key": payloads.UPSTREAM_KEY}}

    return {
        "model_list": [entry(payloads.MODEL, upstream), entry(payloads.STREAM_MODEL, stream_upstream)],
        "general_settings": {"master_key": MASTER_KEY},
        "litellm_settings": {"telemetry": False, "drop_params": True},
    }


def start(tmp: Path, port: int, upstream: str, stream_upstream: str) -> Proc:
    exe = ensure_litellm()
    path = tmp / "litellm.yaml"
    path.write_text(yaml.safe_dump(config(upstream, stream_upstream), sort_keys=False))
    # Offline: use the bundled model cost map instead of fetching it, and send no telemetry.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}
    proc = spawn("litellm", [str(exe), "--config", str(path), "--host", LOOPBACK, "--port", str(port),
                             "--num_workers", "1"], tmp / "litellm.log", env=env)
    wait_port(proc, port, timeout=180)
    return proc
