"""wrk runs driven by a generated Lua script: POST bodies in, a JSON summary out of done()."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

WRK = shutil.which("wrk") or "/usr/bin/wrk"
PERCENTILES = (1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99)
_MARK = "BENCH_JSON "

# done() runs once in the main thread after all threads stop; it prints one JSON line we parse.
_DONE = r"""
local pcts = {%s}
done = function(summary, latency, requests)
  local p = {}
  for _, q in ipairs(pcts) do
    p[#p + 1] = string.format('"%%g":%%d', q, latency:percentile(q))
  end
  local e = summary.errors
  io.write(string.format(
    '%s{"duration_us":%%d,"requests":%%d,"bytes":%%d,' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"latency_us":{"min":%%d,"max":%%d,"mean":%%.1f,"stdev":%%.1f,"percentiles":{%%s}}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(p, ",")))
end
"""


@dataclass(frozen=True)
class Load:
    url: str
    body: bytes
    headers: Mapping[str, str]
    connections: int
    threads: int
    duration_s: int


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    bytes: int
    errors: dict[str, int]
    latency_us: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def pct_ms(self, q: float) -> float:
        return float(self.latency_us["percentiles"][f"{q:g}"]) / 1000.0

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "duration_s": self.duration_s, "rps": self.rps,
                "bytes": self.bytes, "errors": self.errors, "latency_us": self.latency_us}


def _lua_str(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    assert "]==]" not in text
    return f"[==[{text}]==]"


def script(load: Load) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_str(load.body)}"]
    lines += [f"wrk.headers[ {_lua_str(k)} ] = {_lua_str(v)}" for k, v in load.headers.items()]
    pcts = ", ".join(f"{q:g}" for q in PERCENTILES)
    return "\n".join(lines) + _DONE % (pcts, _MARK)


def start(load: Load, tmp: Path, name: str) -> subprocess.Popen[str]:
    """Start wrk in the background (the soak samples memory while it runs); finish() collects it."""
    lua = tmp / f"{name}.lua"
    lua.write_text(script(load))
    cmd = [WRK, "-t", str(load.threads), "-c", str(load.connections), "-d", f"{load.duration_s}s",
           "--timeout", "10s", "-s", str(lua), load.url]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str], timeout: float) -> WrkResult:
    stdout, stderr = proc.communicate(timeout=timeout)
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            data = orjson.loads(line[len(_MARK):])
            return WrkResult(requests=data["requests"], duration_s=data["duration_us"] / 1e6,
                             bytes=data["bytes"], errors=data["errors"], latency_us=data["latency_us"])
    raise RuntimeError(f"wrk printed no summary (exit {proc.returncode}):\n{stdout}\n{stderr}")


def run(load: Load, tmp: Path, name: str) -> WrkResult:
    return finish(start(load, tmp, name), timeout=load.duration_s + 60)
