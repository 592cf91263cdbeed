"""`make run` on the shipped gateway.yaml serves an OpenAI-SDK call offline, and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai

from tests.harness import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_make_run_serves_the_openai_sdk(tmp_path: Path) -> None:
    gateway_port, sim_port = free_port(), free_port()
    # The shipped file, with free ports in place of 8080/8081 so the test never collides.
    text = (ROOT / "gateway.yaml").read_text()
    text = text.replace("8081", str(sim_port)).replace("port: 8080", f"port: {gateway_port}")
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    proc = subprocess.Popen(
        ["make", "-s", "run", f"CONFIG={config}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{gateway_port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as ready:
                    if ready.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the gateway did not become ready"
            time.sleep(0.2)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="demo-key", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello!"}])
        assert reply.choices[0].message.content
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        streamed = client.chat.completions.create(
            model="llama", messages=[{"role": "user", "content": "Hello!"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    # Read as JSON lines: the exact spacing is the serializer's business.
    events = [json.loads(line).get("event") for line in output.splitlines() if line.startswith("{")]
    assert "stopped" in events, output
