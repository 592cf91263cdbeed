"""Memory: RSS with N concurrent idle streams, and RSS over a soak under moderate load.

Idle streams: a hold upstream sends one chunk per stream and then keeps it open; the client here
opens N streaming requests through the target, waits for each first chunk, and keeps them all open
while the target's RSS is read from /proc.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import nginx, wrk
from bench.payloads import JSON_BODY, STREAM_BODY
from bench.procs import LOOPBACK, Proc, StartError, free_port, raise_nofile, spawn, wait_port
from bench.settings import Settings
from bench.targets import TARGETS, Context, Endpoint, Target, probe
from bench.ttfb import request_bytes

MIB = 1024 * 1024


def _say(msg: str) -> None:
    print(msg, flush=True)


def rss_bytes(leader: int) -> int:
    """RSS of every process in the target's session (its workers too): it was started as their leader."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != leader:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue  # a process that exited while we looked
    return total


class _Streams:
    """Open streaming requests, each kept open after its first chunk arrived."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.request = request_bytes(endpoint.port, endpoint.stream_path, STREAM_BODY, endpoint.headers)
        self.port = endpoint.port
        self.writers: list[asyncio.StreamWriter] = []
        self.failures: list[str] = []

    async def _open_one(self) -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, self.port)
        writer.write(self.request)
        seen = b""
        while b"data:" not in seen:
            data = await reader.read(4096)
            if not data:
                writer.close()
                raise ConnectionError(f"closed before the first chunk: {seen[:120]!r}")
            seen += data
        if not seen.startswith(b"HTTP/1.1 200"):
            writer.close()
            raise ConnectionError(f"not 200: {seen[:120]!r}")
        self.writers.append(writer)

    async def open(self, count: int, parallel: int = 200) -> None:
        gate = asyncio.Semaphore(parallel)  # a connect storm would only measure the accept backlog

        async def one() -> None:
            async with gate:
                try:
                    async with asyncio.timeout(30):
                        await self._open_one()
                except (OSError, TimeoutError) as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one() for _ in range(count)))

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()


async def _idle_streams(target_proc: Proc, endpoint: Endpoint, steps: list[int]) -> list[dict[str, Any]]:
    streams = _Streams(endpoint)
    rows: list[dict[str, Any]] = [{"streams": 0, "open": 0, "rss_mib": rss_bytes(target_proc.pid) / MIB}]
    try:
        for step in steps:
            await streams.open(step - len(streams.writers))
            await asyncio.sleep(2)  # let the target settle (buffers, GC) before reading RSS
            rss = rss_bytes(target_proc.pid) / MIB
            row = {"streams": step, "open": len(streams.writers), "failed": len(streams.failures),
                   "rss_mib": rss, "first_failure": streams.failures[0] if streams.failures else None}
            if streams.writers:
                row["kib_per_stream"] = (rss - rows[0]["rss_mib"]) * 1024 / len(streams.writers)
            rows.append(row)
            _say(f"  {step:>6} asked, {len(streams.writers):>6} open: RSS {rss:.1f} MiB"
                 + (f" ({len(streams.failures)} failed: {streams.failures[0]})" if streams.failures else ""))
    finally:
        streams.close()
    return rows


def _target_proc(target: Target) -> Proc:
    # The measured process is the last one a target started (redis, if any, comes first).
    return target.procs[-1]


def idle_streams(name: str, steps: list[int]) -> dict[str, Any]:
    limit = raise_nofile(2 * max(steps) + 1000)
    with tempfile.TemporaryDirectory(prefix="llm-gateway-bench-mem-") as tmp_name:
        tmp = Path(tmp_name)
        up_port = free_port()
        upstream = spawn("hold-upstream", [sys.executable, "-m", "bench.hold_upstream", str(up_port)],
                         tmp / "hold.log", cwd=Path(__file__).resolve().parent.parent)
        target = TARGETS[name]()
        try:
            wait_port(upstream, up_port)
            endpoint = target.start(Context(tmp, up_port))
            _say(f"== idle streams through {name} (RLIMIT_NOFILE {limit})")
            rows = asyncio.run(_idle_streams(_target_proc(target), endpoint, steps))
        finally:
            target.stop()
            upstream.stop()
    return {"target": name, "nofile_limit": limit, "steps": rows}


def soak(name: str, seconds: int, interval: int, s: Settings) -> dict[str, Any]:
    """Moderate load (c8 JSON + c4 streams) for `seconds`, sampling the target's RSS every `interval`."""
    raise_nofile(65536)
    with tempfile.TemporaryDirectory(prefix="llm-gateway-bench-soak-") as tmp_name:
        tmp = Path(tmp_name)
        up_port = free_port()
        upstream = nginx.start(tmp, "upstream", nginx.upstream_conf(tmp, up_port, s.nginx_workers), up_port)
        target = TARGETS[name]()
        try:
            endpoint = target.start(Context(tmp, up_port, s.nginx_workers))
            probe(endpoint)
            proc = _target_proc(target)
            _say(f"== soak {name}: {seconds}s, RSS every {interval}s")
            json_load = wrk.Load(endpoint.url(endpoint.json_path), JSON_BODY, endpoint.headers, 8, 1, seconds)
            stream_load = wrk.Load(endpoint.url(endpoint.stream_path), STREAM_BODY, endpoint.headers, 4, 1,
                                   seconds)
            loads = [wrk.start(json_load, tmp, "soak-json"), wrk.start(stream_load, tmp, "soak-stream")]
            samples: list[tuple[float, float]] = []
            began = time.monotonic()
            while time.monotonic() - began < seconds:
                samples.append((round(time.monotonic() - began, 1), rss_bytes(proc.pid) / MIB))
                _say(f"  t={samples[-1][0]:>6.0f}s RSS {samples[-1][1]:.1f} MiB")
                time.sleep(min(interval, max(0.0, seconds - (time.monotonic() - began))))
            samples.append((round(time.monotonic() - began, 1), rss_bytes(proc.pid) / MIB))
            results = [wrk.finish(p, timeout=120).as_dict() for p in loads]
        finally:
            target.stop()
            upstream.stop()
    rss = [r for _, r in samples]
    return {"target": name, "seconds": seconds, "interval_s": interval, "samples": samples,
            "first_mib": rss[0], "last_mib": rss[-1], "max_mib": max(rss),
            "load": {"json_c8": results[0], "stream_c4": results[1]}}


def markdown(idle: list[dict[str, Any]], soaks: list[dict[str, Any]], machine: dict[str, str]) -> str:
    out = [f"# Memory results ({time.strftime('%Y-%m-%d %H:%M %Z')})", "", "Machine:", ""]
    out += [f"- {k}: {v}" for k, v in machine.items()]
    if idle:
        out += ["", "## Idle streams (one chunk sent, then held open)", "",
                "| target | streams asked | open | failed | RSS MiB | KiB per stream |",
                "|---|---:|---:|---:|---:|---:|"]
        for run in idle:
            for row in run.get("steps", []):
                per = row.get("kib_per_stream")
                out.append(f"| {run['target']} | {row['streams']:,} | {row['open']:,} "
                           f"| {row.get('failed', 0):,} | {row['rss_mib']:.1f} "
                           f"| {'' if per is None else f'{per:.1f}'} |")
            failures = [row["first_failure"] for row in run.get("steps", []) if row.get("first_failure")]
            if failures or run.get("note"):
                out.append(f"\n{run['target']}: {run.get('note') or 'first failure: ' + failures[0]}\n")
        limits = {run["nofile_limit"] for run in idle if "nofile_limit" in run}
        out += ["", f"Open-file limit in force: {', '.join(map(str, limits))} (a proxied stream costs the "
                    "target two descriptors; 10,000 streams need a hard limit above 20,000)."]
    for run in soaks:
        out += ["", f"## Soak: {run['target']}, {run['seconds']} s", ""]
        if run.get("note"):
            out.append(run["note"])
            continue
        out += [f"RSS first {run['first_mib']:.1f} MiB, last {run['last_mib']:.1f} MiB, "
                f"max {run['max_mib']:.1f} MiB (growth {run['last_mib'] - run['first_mib']:+.1f} MiB); "
                f"load: {run['load']['json_c8']['rps']:,.0f} req/s JSON + "
                f"{run['load']['stream_c4']['rps']:,.0f} streams/s"]
    return "\n".join(out) + "\n"


def guarded(fn: Any, name: str, *args: Any) -> dict[str, Any]:
    """Run one memory measurement; a target that cannot start is reported, never silently dropped."""
    try:
        result: dict[str, Any] = fn(name, *args)
        return result
    except StartError as exc:
        _say(f"  SKIPPED {name}: {exc}")
        return {"target": name, "note": f"skipped: {str(exc).splitlines()[0]}"}

