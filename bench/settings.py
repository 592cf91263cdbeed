"""Run settings from the environment (and CLI flags), so `make bench` needs no arguments."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from bench.targets import DEFAULT, PEERS, TARGETS


def parse_duration(text: str) -> int:
    """'10s', '2', '1m', '500ms' -> whole seconds (at least 1; wrk counts in seconds)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ValueError(f"bad duration {text!r}: use e.g. 10s, 500ms, 1m")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2) or "s"]
    return max(1, round(float(m.group(1)) * scale))


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    duration_s: int
    warmup_s: int
    connections: int
    threads: int
    nginx_workers: int
    quick: bool

    @classmethod
    def from_env(cls, quick: bool | None = None) -> Settings:
        quick = _flag("BENCH_QUICK") if quick is None else quick
        return cls(
            duration_s=parse_duration(os.environ.get("BENCH_DURATION", "2s" if quick else "10s")),
            warmup_s=parse_duration(os.environ.get("BENCH_WARMUP", "1s" if quick else "3s")),
            connections=int(os.environ.get("BENCH_CONNECTIONS", "32")),
            threads=int(os.environ.get("BENCH_THREADS", "2")),
            # One nginx worker per role: the comparison is per worker, like the 1-worker gateway.
            nginx_workers=int(os.environ.get("BENCH_NGINX_WORKERS", "1")),
            quick=quick,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def target_names(cli: str | None, peers: bool | None) -> list[str]:
    spec = cli or os.environ.get("BENCH_TARGETS", "")
    if spec.strip() == "all":
        names = list(TARGETS)
    elif spec.strip():
        names = [n.strip() for n in spec.split(",") if n.strip()]
    else:
        names = list(DEFAULT)
    if (_flag("PEERS") if peers is None else peers):
        names += [p for p in PEERS if p not in names]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        raise SystemExit(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    # direct and floor anchor every ratio, so they always run.
    return [n for n in ("direct", "floor") if n not in names] + names
