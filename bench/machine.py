"""What the numbers were measured on, read at run time and printed with every report."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

from bench.gateway import executable

BUSY_WARN = 0.10  # share of all CPUs busy that marks a box as not idle (a quiet one sits near 0-2%)


def _first_line(cmd: list[str]) -> str:
    if shutil.which(cmd[0]) is None:
        return "not installed"
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _proc_field(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], capture_output=True, text=True, check=False, cwd=cwd)
    return out.stdout.strip()


def gateway_source() -> str:
    """Which gateway code the `gateway` script runs: its package dir and that checkout's commit."""
    python = executable().parent / "python"
    if not python.exists():
        return "not installed"
    # cwd=/ so the answer is what the installed script imports, not a gateway/ beside the harness.
    out = subprocess.run([str(python), "-c", "import gateway, os; print(os.path.dirname(gateway.__file__))"],
                         capture_output=True, text=True, check=False, cwd="/")
    if out.returncode != 0:
        return "not importable"
    src = Path(out.stdout.strip())
    commit = _git(src, "describe", "--always", "--dirty")
    branch = _git(src, "rev-parse", "--abbrev-ref", "HEAD")
    return f"{src} @ {branch} {commit}" if commit else str(src)


def describe() -> dict[str, str]:
    mem_kb = _proc_field("/proc/meminfo", "MemTotal").split()[0]
    commit = _git(Path(__file__).resolve().parent, "describe", "--always", "--dirty")
    return {
        "cpus (nproc)": str(len(os.sched_getaffinity(0))),
        "cpu model": _proc_field("/proc/cpuinfo", "model name"),
        "memory": f"{int(mem_kb) / 1024 / 1024:.1f} GiB" if mem_kb.isdigit() else "unknown",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "aiohttp / uvloop": f"{_version('aiohttp')} / {_version('uvloop')}",
        "wrk": _first_line(["wrk", "-v"]).split(" Copyright")[0],
        "nginx": _first_line(["nginx", "-v"]),
        "redis-server": _first_line(["redis-server", "--version"]),
        "harness commit": commit or "unknown",
        "gateway under test": gateway_source(),
    }


def _cpu_jiffies() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds`: a benchmark on a busy 2-core box measures its neighbours."""
    busy0, total0 = _cpu_jiffies()
    time.sleep(seconds)
    busy1, total1 = _cpu_jiffies()
    return (busy1 - busy0) / max(1, total1 - total0)
