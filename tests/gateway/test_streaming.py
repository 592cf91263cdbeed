"""Streams pass through as they arrive; usage is read on the side; disconnects and timeouts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from tests.harness import TEAM_KEY, Served, gateway, matrix_config, serve_app, sim_fault, sim_requests

CHUNK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"content":"%s"},"finish_reason":null}],"usage":null}\n\n'
)
USAGE = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}\n\n'
)
DONE = b"data: [DONE]\n\n"
EVENTS = [CHUNK % b"Hello", CHUNK % b" there", CHUNK % b" friend", USAGE, DONE]


class CannedUpstream:
    """An OpenAI-dialect upstream that streams fixed bytes, one write per event, and records."""

    def __init__(self, events: list[bytes], gap_s: float = 0.0, first_event_after_s: float = 0.0) -> None:
        self.events = events
        self.gap_s = gap_s
        self.first_event_after_s = first_event_after_s
        self.bodies: list[dict[str, Any]] = []
        self.cancelled = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            await asyncio.sleep(self.first_event_after_s)
            for event in self.events:
                await response.write(event)
                await asyncio.sleep(self.gap_s)
        except (asyncio.CancelledError, ConnectionError):
            self.cancelled.set()
            raise
        return response


def canned_config(upstream_url: str, timeouts: str = "") -> str:
    return f"""
deployments:
  - name: canned
    dialect: openai
    url: {upstream_url}/v1
    model: m
    api_key: upstream-key
    {timeouts}
models:
  m: {{deployments: [canned]}}
teams:
  team-a: {{keys: [{TEAM_KEY}]}}
"""


async def _raw_stream(gw_url: str, body: dict[str, Any]) -> bytes:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gw_url}/v1/chat/completions", headers={"Authorization": f"Bearer {TEAM_KEY}"}, json=body) as r,
    ):
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        return await r.read()


@pytest.fixture
async def canned() -> AsyncIterator[tuple[CannedUpstream, Served]]:
    upstream = CannedUpstream(EVENTS)
    async with serve_app(upstream.app()) as served:
        yield upstream, served


BODY = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


async def test_client_asked_usage_gets_the_upstreams_bytes_exactly(canned: tuple[CannedUpstream, Served]) -> None:
    upstream, served = canned
    async with gateway(canned_config(served.url)) as gw:
        received = await _raw_stream(gw.url, {**BODY, "stream_options": {"include_usage": True}})
    assert received == b"".join(EVENTS)
    assert upstream.bodies[0]["stream_options"] == {"include_usage": True}


async def test_gateway_asked_usage_withholds_exactly_that_chunk(canned: tuple[CannedUpstream, Served]) -> None:
    upstream, served = canned
    async with gateway(canned_config(served.url)) as gw:
        received = await _raw_stream(gw.url, BODY)
    assert upstream.bodies[0]["stream_options"] == {"include_usage": True}
    assert received == b"".join(e for e in EVENTS if e is not USAGE)


async def test_foundry_callers_get_strict_framing() -> None:
    noisy = [
        b": keep-alive\r\n\r\n",
        (CHUNK % b"Hi").replace(b"\n", b"\r\n"),
        b"event: ping\ndata: {}\n\n",
        USAGE,
        DONE,
    ]
    upstream = CannedUpstream(noisy)
    async with (
        serve_app(upstream.app()) as served,
        gateway(canned_config(served.url)) as gw,
        aiohttp.ClientSession() as session,
        session.post(
            f"{gw.url}/chat/completions?api-version=2024-05-01-preview",
            headers={"api-key": TEAM_KEY},
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ) as resp,
    ):
        received = await resp.read()
    events = received.split(b"\n\n")
    assert events[-1] == b""
    assert b"\r" not in received
    assert all(e.startswith(b"data: ") for e in events[:-1])
    assert events[-2] == b"data: [DONE]"
    assert b"keep-alive" not in received and b"event:" not in received


async def test_first_chunk_arrives_before_the_second_is_sent(sim: Served) -> None:
    """The simulator pauses 0.4 s between chunks; the first must not wait for the rest."""
    await sim_fault(sim, match="/v1/chat/completions", kind="pause", pause_s=0.4)
    async with gateway(matrix_config(sim.url)) as gw:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0)
        async with client:
            started = time.monotonic()
            stream = await client.chat.completions.create(
                model="m-openai", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            arrivals = [time.monotonic() - started async for _ in stream]
    assert len(arrivals) >= 3
    # The first chunk came before the upstream's first pause ended; the rest came one pause apart.
    assert arrivals[0] < 0.35
    assert arrivals[-1] - arrivals[0] > 0.4 * (len(arrivals) - 2)


async def test_the_client_hears_the_200_before_a_slow_first_event() -> None:
    """The upstream answered 200 and thinks before its first token: the client gets the status
    and headers at once (they go with the first event only when that is already there)."""
    upstream = CannedUpstream(EVENTS, first_event_after_s=0.6)
    async with serve_app(upstream.app()) as served, gateway(canned_config(served.url)) as gw:
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.post(
                f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {TEAM_KEY}"}, json=BODY
            ) as resp:
                headers_after = time.monotonic() - started
                received = await resp.read()
                body_after = time.monotonic() - started
    assert resp.status == 200
    assert headers_after < 0.4
    assert body_after >= 0.6
    assert received == b"".join(event for event in EVENTS if event != USAGE)


async def test_client_disconnect_cancels_the_upstream_call() -> None:
    upstream = CannedUpstream([CHUNK % b"word"] * 50 + [DONE], gap_s=0.05)
    async with serve_app(upstream.app()) as served, gateway(canned_config(served.url)) as gw:
        async with aiohttp.ClientSession() as session:
            resp = await session.post(
                f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {TEAM_KEY}"}, json=BODY
            )
            await resp.content.readuntil(b"\n\n")
            resp.close()  # the client leaves after the first chunk
        await asyncio.wait_for(upstream.cancelled.wait(), timeout=2)


async def test_upstream_dying_mid_stream_ends_the_stream_without_retry(sim: Served) -> None:
    await sim_fault(sim, match="/v1/chat/completions", kind="drop_after_chunks", chunks=2)
    async with gateway(matrix_config(sim.url)) as gw:
        received = await _raw_stream(gw.url, {**BODY, "model": "m-openai"})
    assert received.count(b"data: ") >= 1
    assert b"[DONE]" not in received
    assert len(await sim_requests(sim)) == 1


async def test_first_byte_timeout_answers_504(sim: Served) -> None:
    await sim_fault(sim, match="/v1/chat/completions", kind="hang")
    extra = "    timeouts: {first_byte_s: 0.3}"
    config = matrix_config(sim.url).replace(
        "    model: gpt-4o-2024-08-06\n", f"    model: gpt-4o-2024-08-06\n{extra}\n", 1
    )
    async with gateway(config) as gw:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0)
        async with client:
            started = time.monotonic()
            with pytest.raises(openai.APIStatusError) as err:
                await client.chat.completions.create(model="m-openai", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 504
    assert time.monotonic() - started < 2


async def test_idle_timeout_ends_a_quiet_stream() -> None:
    upstream = CannedUpstream([CHUNK % b"one", CHUNK % b"two", DONE], gap_s=1.0)
    async with serve_app(upstream.app()) as served, gateway(canned_config(served.url, "timeouts: {idle_s: 0.3}")) as gw:
        started = time.monotonic()
        received = await _raw_stream(gw.url, BODY)
    assert received == CHUNK % b"one"
    assert time.monotonic() - started < 0.9


async def test_connect_error_answers_502_in_the_callers_dialect() -> None:
    from tests.harness import free_port

    async with (
        gateway(canned_config(f"http://127.0.0.1:{free_port()}")) as gw,
        aiohttp.ClientSession() as session,
        session.post(
            f"{gw.url}/openai/deployments/m/chat/completions?api-version=2024-10-21",
            headers={"api-key": TEAM_KEY},
            json={"messages": [{"role": "user", "content": "hi"}]},
        ) as resp,
    ):
        assert resp.status == 502
        payload = orjson.loads(await resp.read())
    assert payload["error"]["code"] == "upstream_unavailable"
    assert "upstream-key" not in orjson.dumps(payload).decode()
