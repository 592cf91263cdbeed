"""`gateway run` as a real OS process, for tests that need several replicas or signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness import free_port

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def gateway_process(config_text: str, tmp: Path, *, name: str = "gw", timeout_s: float = 30) -> Iterator[str]:
    """Start ``python -m gateway run`` on a free port; yield its base URL; SIGTERM it afterwards."""
    port = free_port()
    config = tmp / f"{name}.yaml"
    config.write_text(config_text)
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(config), "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except (urllib.error.URLError, ConnectionError):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited: {(tmp / f'{name}.log').read_text()}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
