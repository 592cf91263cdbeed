"""Injected failures: tests post them to ``/_sim/faults`` and matching requests misbehave.

A fault is JSON such as::

    {"match": "gpt-4o", "status": 503, "count": 2, "retry_after_ms": 0, "body": {...}}
    {"match": "/chat/completions", "kind": "drop_after_chunks", "chunks": 3}
    {"match": "dep-a", "kind": "pause", "pause_s": 0.3}
    {"kind": "hang"}

``match`` is a substring of the request path or an exact deployment/model id (empty or absent
matches every request). ``count`` is how many requests the fault applies to; absent means 1 and
``null`` means forever. The oldest matching fault wins.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from typing import Any


class FaultKind(enum.Enum):
    STATUS = "status"  # answer an error status in the dialect's shape
    DROP_AFTER_CHUNKS = "drop_after_chunks"  # close the connection after K stream chunks
    PAUSE = "pause"  # sleep between stream chunks (before the answer when not streaming)
    HANG = "hang"  # never answer the headers


@dataclass
class Fault:
    id: int
    kind: FaultKind
    match: str
    remaining: int | None  # None: forever
    status: int = 500
    retry_after_ms: int | None = None
    body: Any = None  # None: the dialect's usual error body
    chunks: int = 0
    pause_s: float = 0.0

    def matches(self, path: str, target: str | None) -> bool:
        return not self.match or self.match in path or self.match == target

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "kind": self.kind.value, "match": self.match}
        data["count"] = self.remaining
        if self.kind is FaultKind.STATUS:
            data.update(status=self.status, retry_after_ms=self.retry_after_ms, body=self.body)
        elif self.kind is FaultKind.DROP_AFTER_CHUNKS:
            data["chunks"] = self.chunks
        elif self.kind is FaultKind.PAUSE:
            data["pause_s"] = self.pause_s
        return data


class FaultError(ValueError):
    """A fault description that cannot be used; the message says why."""


def _int(data: dict[str, Any], key: str, low: int, high: int | None = None) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
        bounds = f"between {low} and {high}" if high else f"at least {low}"
        raise FaultError(f"'{key}' must be an integer {bounds}")
    return value


def parse_fault(data: Any, fault_id: int) -> Fault:
    if not isinstance(data, dict):
        raise FaultError("a fault must be a JSON object")
    known = {"match", "kind", "status", "count", "retry_after_ms", "body", "chunks", "pause_s"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise FaultError(f"unknown fault fields: {unknown}")
    match = data.get("match") or ""
    if not isinstance(match, str):
        raise FaultError("'match' must be a string")
    kind_name = data.get("kind", "status")
    try:
        kind = FaultKind(kind_name)
    except ValueError:
        raise FaultError(f"'kind' must be one of {[k.value for k in FaultKind]}") from None
    remaining: int | None = 1  # absent: once
    if "count" in data:
        remaining = None if data["count"] is None else _int(data, "count", 1)
    fault = Fault(id=fault_id, kind=kind, match=match, remaining=remaining)
    if kind is FaultKind.STATUS:
        fault.status = _int(data, "status", 400, 599)
        if data.get("retry_after_ms") is not None:
            fault.retry_after_ms = _int(data, "retry_after_ms", 0)
        fault.body = data.get("body")
    elif kind is FaultKind.DROP_AFTER_CHUNKS:
        fault.chunks = _int(data, "chunks", 0)
    elif kind is FaultKind.PAUSE:
        pause = data.get("pause_s")
        if isinstance(pause, bool) or not isinstance(pause, int | float) or pause < 0:
            raise FaultError("'pause_s' must be a non-negative number")
        fault.pause_s = float(pause)
    return fault


class FaultBook:
    """The active faults, in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, data: Any) -> Fault:
        fault = parse_fault(data, next(self._ids))
        self._faults.append(fault)
        return fault

    def take(self, path: str, target: str | None) -> Fault | None:
        """The first fault matching this request, counting it as used."""
        for fault in self._faults:
            if fault.matches(path, target):
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def as_json(self) -> list[dict[str, Any]]:
        return [fault.as_json() for fault in self._faults]

    def clear(self) -> None:
        self._faults.clear()
