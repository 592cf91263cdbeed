"""Where a target's CPU goes under load: wrk drives it while py-spy samples it.

``python -m bench profile --target gateway-redis --seconds 15 [--stream]`` starts the static
upstream and the target as ``make bench`` does, loads it with wrk at c32, and prints the
functions with the most samples, by self time and inclusive time. The raw collapsed stacks are
kept (``bench/results/profile-<target>.txt``) for a flame graph.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench import nginx, wrk
from bench.payloads import JSON_BODY, STREAM_BODY
from bench.procs import UNDER_ENV, free_port, raise_nofile
from bench.settings import Settings
from bench.targets import TARGETS, Context, probe

RESULTS = Path(__file__).resolve().parent / "results"


def _py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is missing: `pip install py-spy` in the venv")
    return found


def summarise(collapsed: str, top: int) -> str:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_short(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples"

    def table(title: str, counts: Counter[str]) -> list[str]:
        rows = [f"## {title} ({total} samples)", "", "| % | function |", "| ---: | --- |"]
        rows += [f"| {100 * n / total:.1f} | `{name}` |" for name, n in counts.most_common(top)]
        return [*rows, ""]

    return "\n".join(table("self", own) + table("inclusive", inclusive))


def _short(frame: str) -> str:
    # py-spy frames read "function (path/to/file.py:line)"; keep the file's last two parts.
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process and its children that were waited for (workers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


@dataclass
class Loaded:
    """A started target with the upstream behind it, and how to load it."""

    tmp: Path
    pid: int
    settings: Settings
    url: str
    body: bytes
    headers: Mapping[str, str]

    def load(self, seconds: int) -> wrk.Load:
        s = self.settings
        return wrk.Load(self.url, self.body, self.headers, s.connections, s.threads, seconds)


@contextmanager
def started(target_name: str, stream: bool) -> Iterator[Loaded]:
    """The static upstream and the target, as ``make bench`` starts them; stopped on exit."""
    raise_nofile(65536)
    with tempfile.TemporaryDirectory(prefix="llm-gateway-profile-") as tmp_name:
        tmp = Path(tmp_name)
        upstream_port = free_port()
        upstream = nginx.start(tmp, "upstream", nginx.upstream_conf(tmp, upstream_port, 1), upstream_port)
        target = TARGETS[target_name]()
        try:
            endpoint = target.start(Context(tmp, upstream_port))
            probe(endpoint)
            path, body = (endpoint.stream_path, STREAM_BODY) if stream else (endpoint.json_path, JSON_BODY)
            yield Loaded(tmp, target.procs[-1].pid, Settings.from_env(), endpoint.url(path), body, endpoint.headers)
        finally:
            target.stop()
            upstream.stop()


def cpu_per_request(target_name: str, seconds: int, stream: bool) -> int:
    """CPU microseconds the target spends per request under c32 load: steadier than req/s on a
    shared 2-core box, because it does not depend on how the cores are split with wrk and nginx."""
    with started(target_name, stream) as t:
        wrk.run(t.load(2), t.tmp, "warm")
        before = cpu_seconds(t.pid)
        result = wrk.run(t.load(seconds), t.tmp, f"{target_name}-cpu")
        used = cpu_seconds(t.pid) - before
    print(f"{target_name}{' stream' if stream else ''}: {result.rps:,.0f} req/s, "
          f"{1e6 * used / max(1, result.requests):.0f} CPU us per request ({used:.2f} s CPU)")
    return 0


def instructions_per_request(target_name: str, seconds: int, stream: bool) -> int:
    """Instructions the target runs per request, counted by callgrind. Unlike CPU time they do
    not move with the neighbours: the same build gives the same count to within a percent, so
    two builds compare to the instruction. Kernel time (the syscalls) is not counted, and the
    load is c4, as the target runs some 50 times slower under valgrind."""
    valgrind, control = shutil.which("valgrind"), shutil.which("callgrind_control")
    if not valgrind or not control:
        raise SystemExit("valgrind is missing: `apt-get install valgrind`")
    with tempfile.TemporaryDirectory(prefix="llm-gateway-callgrind-") as out_dir:
        out = Path(out_dir) / "callgrind.out"
        os.environ[UNDER_ENV] = f"{valgrind} --tool=callgrind --callgrind-out-file={out} --dump-instr=no"
        try:
            with started(target_name, stream) as t:
                load = replace(t.load(8), connections=4, threads=1)
                wrk.run(load, t.tmp, "warm")
                subprocess.run([control, "-z", str(t.pid)], check=True, capture_output=True)
                result = wrk.run(replace(load, duration_s=seconds), t.tmp, f"{target_name}-instructions")
                subprocess.run([control, "-d", str(t.pid)], check=True, capture_output=True)
                dump = max(Path(out_dir).glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
                total = _callgrind_total(dump.read_text())
        finally:
            del os.environ[UNDER_ENV]
    print(f"{target_name}{' stream' if stream else ''}: {result.requests} requests at c4, "
          f"{total / max(1, result.requests) / 1000:.1f}k instructions per request")
    return 0


def _callgrind_total(dump: str) -> int:
    for line in dump.splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError("callgrind's dump has no totals line")


def run(target_name: str, seconds: int, stream: bool, top: int) -> int:
    spy = _py_spy()
    with started(target_name, stream) as t:
        driver = wrk.start(t.load(seconds + 2), t.tmp, f"{target_name}-profile")
        out = t.tmp / "profile.txt"
        subprocess.run([spy, "record", "--pid", str(t.pid), "--duration", str(seconds), "--rate", "250",
                        "--format", "raw", "--output", str(out), "--nonblocking"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = wrk.finish(driver, seconds + 30)
        collapsed = out.read_text()
    RESULTS.mkdir(exist_ok=True)
    kept = RESULTS / f"profile-{target_name}{'-stream' if stream else ''}.txt"
    kept.write_text(collapsed)
    print(f"# {target_name}: {result.rps:,.0f} req/s under py-spy (sampling slows it), stacks in {kept}\n")
    print(summarise(collapsed, top))
    return 0
