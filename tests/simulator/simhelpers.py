"""Shared constants and SSE helpers for the simulator tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from aiohttp.web import Application

Sim = TestClient[Any, Application]
MakeSim = Callable[..., Awaitable[Sim]]
OPENAI_AUTH = {"Authorization": "Bearer sim-key"}
AZURE_AUTH = {"api-key": "sim-key"}
CHAT: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "Hello there, simulator!"}],
}


async def sse_events(response: ClientResponse) -> list[Any]:
    """The stream's events: parsed JSON objects, and the string "[DONE]" for the terminator."""
    text = await response.text()
    assert text.endswith("\n\n")
    events: list[Any] = []
    for frame in text.split("\n\n")[:-1]:
        assert frame.startswith("data: "), frame
        data = frame[len("data: ") :]
        events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def content_of(events: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event["choices"]
    )
