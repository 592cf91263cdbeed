"""One benchmark run: the upstream once, then each target started, loaded, measured and stopped."""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path
from typing import Any

from bench import nginx, peers, ttfb, wrk
from bench.machine import BUSY_WARN, busy_fraction
from bench.payloads import JSON_BODY, STREAM_BODY
from bench.procs import StartError, free_port, raise_nofile
from bench.settings import Settings
from bench.targets import TARGETS, Context, Endpoint, probe


def _say(msg: str) -> None:
    print(msg, flush=True)


def measure(endpoint: Endpoint, s: Settings, tmp: Path, name: str) -> dict[str, Any]:
    json_at, stream_at = endpoint.url(endpoint.json_path), endpoint.url(endpoint.stream_path)

    def load(url: str, body: bytes, connections: int, seconds: int) -> wrk.Load:
        threads = min(s.threads, connections)
        return wrk.Load(url, body, endpoint.headers, connections, threads, seconds)

    # Warm-up: connection pools, caches, the allocator and lazy imports; the results are discarded.
    wrk.run(load(json_at, JSON_BODY, s.connections, s.warmup_s), tmp, f"{name}-warm")
    wrk.run(load(stream_at, STREAM_BODY, s.connections, 1), tmp, f"{name}-warm-stream")

    out: dict[str, Any] = {}
    steps = (("json_c32", json_at, JSON_BODY, s.connections), ("json_c1", json_at, JSON_BODY, 1),
             ("stream_c32", stream_at, STREAM_BODY, s.connections))
    for key, url, body, connections in steps:
        _say(f"  {key:<14} {s.duration_s}s")
        out[key] = wrk.run(load(url, body, connections, s.duration_s), tmp, f"{name}-{key}").as_dict()
    _say(f"  {'stream_ttfb_c1':<14} {s.duration_s}s")
    out["stream_ttfb_c1"] = ttfb.measure(endpoint.port, endpoint.stream_path, STREAM_BODY,
                                         endpoint.headers, s.duration_s).as_dict()
    return out


def run(names: list[str], s: Settings) -> list[dict[str, Any]]:
    raise_nofile(65536)
    results: list[dict[str, Any]] = []
    if "litellm" in names:
        # Install the peer before any measurement, so a slow pip never overlaps a run.
        try:
            peers.ensure_litellm()
        except StartError as exc:
            _say(f"  SKIPPED litellm: {exc}")
            results.append({"name": "litellm", "label": TARGETS["litellm"].label, "status": "skipped",
                            "note": str(exc)})
            names = [n for n in names if n != "litellm"]
    with tempfile.TemporaryDirectory(prefix="llm-gateway-bench-") as tmp_name:
        tmp = Path(tmp_name)
        upstream_port = free_port()
        upstream = nginx.start(tmp, "upstream", nginx.upstream_conf(tmp, upstream_port, s.nginx_workers),
                               upstream_port)
        ctx = Context(tmp, upstream_port, s.nginx_workers)
        try:
            for name in names:
                target = TARGETS[name]()
                row: dict[str, Any] = {"name": name, "label": target.label}
                _say(f"== {name}: {target.label}")
                # Checked between targets, when nothing of ours runs: anything busy now is a neighbour.
                row["cpu_busy_before"] = round(busy_fraction(), 3)
                if row["cpu_busy_before"] > BUSY_WARN:
                    _say(f"  WARNING: {row['cpu_busy_before']:.0%} of the CPUs busy before this target: "
                         "another workload is running, so its figures are noisy")
                try:
                    endpoint = target.start(ctx)
                    probe(endpoint)
                    row.update(status="ok", **measure(endpoint, s, tmp, name))
                except StartError as exc:
                    # Never silent: the reason is printed now and kept in the report.
                    row.update(status="skipped", note=str(exc).splitlines()[0] if str(exc) else "failed")
                    _say(f"  SKIPPED {name}: {exc}")
                except Exception as exc:
                    row.update(status="failed", note=f"{type(exc).__name__}: {exc}".splitlines()[0])
                    _say(f"  FAILED {name}:\n{traceback.format_exc()}")
                finally:
                    target.stop()
                results.append(row)
        finally:
            upstream.stop()
    return results
