"""Keeps every request the simulator received, for tests to inspect via ``/_sim/requests``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.simulator.jsonbody import parse


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
        }


class Recorder:
    """An in-memory, append-only log of requests (cleared on demand)."""

    def __init__(self) -> None:
        self._requests: list[RecordedRequest] = []

    async def record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()  # cached by aiohttp, so handlers can read it again
        body: Any = None
        if raw:
            try:
                body = parse(raw)
            except ValueError:
                body = None
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        entry = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=headers,
            body=body,
        )
        self._requests.append(entry)
        return entry

    def as_json(self) -> list[dict[str, Any]]:
        return [entry.as_json() for entry in self._requests]

    def clear(self) -> None:
        self._requests.clear()
