"""Injected faults via /_sim/faults: error statuses, dropped and paused streams, hangs."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import pytest

from tests.simulator.simhelpers import AZURE_AUTH, CHAT, OPENAI_AUTH, MakeSim, Sim, sse_events

AZURE_CHAT = "/openai/deployments/dep-a/chat/completions"
GA = {"api-version": "2024-10-21"}
STREAM = {**CHAT, "stream": True}


async def _chat(sim: Sim, body: dict[str, Any] = CHAT) -> aiohttp.ClientResponse:
    return await sim.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)


async def test_status_fault_applies_count_times(sim: Sim) -> None:
    response = await sim.post("/_sim/faults", json={"match": "gpt-4o", "status": 500, "count": 2, "retry_after_ms": 0})
    assert response.status == 201
    fault = await response.json()
    assert fault["kind"] == "status" and fault["count"] == 2 and fault["id"] >= 1
    for _ in range(2):
        response = await _chat(sim)
        assert response.status == 500
        assert response.headers["retry-after"] == "0"
        assert response.headers["retry-after-ms"] == "0"
        error = (await response.json())["error"]
        assert error["type"] == "server_error"
        assert set(error) == {"message", "type", "param", "code"}
    assert (await _chat(sim)).status == 200
    assert await (await sim.get("/_sim/faults")).json() == []


async def test_status_fault_in_azure_shape_with_retry_after(sim: Sim) -> None:
    await sim.post("/_sim/faults", json={"match": "dep-a", "status": 429, "retry_after_ms": 1500})
    response = await sim.post(AZURE_CHAT, params=GA, json=CHAT, headers=AZURE_AUTH)
    assert response.status == 429
    assert response.headers["retry-after"] == "2"
    assert response.headers["retry-after-ms"] == "1500"
    error = (await response.json())["error"]
    assert error["code"] == "429"
    assert error["message"].startswith("Requests to the ChatCompletions_Create Operation")
    assert "Please retry after 2 seconds." in error["message"]


async def test_fault_forever_custom_body_and_clearing(sim: Sim) -> None:
    body = {"error": {"code": "DeploymentNotFound", "message": "gone"}}
    await sim.post("/_sim/faults", json={"match": "/chat/", "status": 404, "count": None, "body": body})
    for _ in range(3):
        response = await sim.post(AZURE_CHAT, params=GA, json=CHAT, headers=AZURE_AUTH)
        assert response.status == 404
        assert await response.json() == body
    embeddings = await sim.post(
        "/openai/deployments/dep-a/embeddings", params=GA, json={"input": "x"}, headers=AZURE_AUTH
    )
    assert embeddings.status == 200  # the path does not match
    assert len(await (await sim.get("/_sim/faults")).json()) == 1
    assert (await sim.delete("/_sim/faults")).status == 204
    assert (await sim.post(AZURE_CHAT, params=GA, json=CHAT, headers=AZURE_AUTH)).status == 200


async def test_the_oldest_matching_fault_wins(sim: Sim) -> None:
    await sim.post("/_sim/faults", json={"match": "other-model", "status": 400})
    await sim.post("/_sim/faults", json={"status": 503})
    await sim.post("/_sim/faults", json={"status": 502})
    assert (await _chat(sim)).status == 503
    assert (await _chat(sim)).status == 502
    assert (await _chat(sim)).status == 200


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 200},
        {"status": "500"},
        {"kind": "explode"},
        {"kind": "drop_after_chunks"},
        {"kind": "pause", "pause_s": -1},
        {"status": 500, "count": 0},
        {"status": 500, "colour": "red"},
        ["not", "an", "object"],
    ],
)
async def test_invalid_faults_are_refused(sim: Sim, fault: object) -> None:
    response = await sim.post("/_sim/faults", json=fault)
    assert response.status == 400
    assert (await response.json())["error"]


async def test_drop_after_chunks(sim: Sim) -> None:
    await sim.post("/_sim/faults", json={"match": "gpt-4o", "kind": "drop_after_chunks", "chunks": 2})
    response = await _chat(sim, STREAM)
    assert response.status == 200
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for data in response.content.iter_any():
            received += data
    frames = received.decode().split("\n\n")
    assert len([f for f in frames if f.startswith("data: ")]) == 2
    assert b"[DONE]" not in received
    # The fault was used up and the server is fine.
    events = await sse_events(await _chat(sim, STREAM))
    assert events[-1] == "[DONE]"


async def test_drop_without_streaming_closes_the_connection(sim: Sim) -> None:
    await sim.post("/_sim/faults", json={"kind": "drop_after_chunks", "chunks": 0})
    with pytest.raises(aiohttp.ClientError):
        await _chat(sim)
    assert (await _chat(sim)).status == 200


async def test_pause_between_chunks(sim: Sim) -> None:
    await sim.post("/_sim/faults", json={"match": "/v1/chat", "kind": "pause", "pause_s": 0.3})
    response = await _chat(sim, STREAM)
    first = await response.content.readuntil(b"\n\n")
    first_at = time.monotonic()
    assert b'"role":"assistant"' in first
    second = await response.content.readuntil(b"\n\n")
    assert time.monotonic() - first_at >= 0.25
    assert b'"content":"This"' in second
    await response.release()


async def test_hang_never_answers_and_does_not_block_others(sim: Sim) -> None:
    await sim.post("/_sim/faults", json={"kind": "hang"})
    with pytest.raises(asyncio.TimeoutError):
        await sim.post(
            "/v1/chat/completions",
            json=CHAT,
            headers=OPENAI_AUTH,
            timeout=aiohttp.ClientTimeout(total=0.2),
        )
    assert (await _chat(sim)).status == 200


async def test_slow_stream_does_not_block_others_and_disconnects_quietly(
    make_sim: MakeSim, caplog: pytest.LogCaptureFixture
) -> None:
    sim = await make_sim(latency_per_token_s=0.02)
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    slow = await _chat(sim, STREAM)
    await slow.content.readuntil(b"\n\n")
    started = time.monotonic()
    assert (await sim.get("/_sim/requests")).status == 200
    assert time.monotonic() - started < 0.05
    slow.close()  # the client goes away mid-stream
    await asyncio.sleep(0.1)
    events = await sse_events(await _chat(sim, STREAM))
    assert events[-1] == "[DONE]"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
