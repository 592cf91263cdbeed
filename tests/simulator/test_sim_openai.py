"""The OpenAI dialect: /v1 routes, Bearer keys, chat, completions, embeddings, models."""

from __future__ import annotations

import base64
import struct
import time

from tests.simulator.simhelpers import CHAT, OPENAI_AUTH, MakeSim, Sim, content_of, sse_events


async def test_chat_completion(sim: Sim) -> None:
    response = await sim.post("/v1/chat/completions", json=CHAT, headers=OPENAI_AUTH)
    assert response.status == 200
    assert len(response.headers["x-request-id"]) == 32
    assert "apim-request-id" not in response.headers
    body = await response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-4o"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "This is a simulated reply."
    assert choice["finish_reason"] == "stop"
    assert "content_filter_results" not in choice
    # "Hello there, simulator!" is 23 characters: 23 // 4 prompt tokens; five words in the reply.
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


async def test_max_tokens_truncates_the_reply(sim: Sim) -> None:
    for limit in ({"max_tokens": 2}, {"max_completion_tokens": 2}):
        response = await sim.post("/v1/chat/completions", json={**CHAT, **limit}, headers=OPENAI_AUTH)
        body = await response.json()
        assert body["choices"][0]["message"]["content"] == "This is"
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["completion_tokens"] == 2


async def test_configured_reply(make_sim: MakeSim) -> None:
    sim = await make_sim(reply="Fixed answer here")
    response = await sim.post("/v1/chat/completions", json=CHAT, headers=OPENAI_AUTH)
    body = await response.json()
    assert body["choices"][0]["message"]["content"] == "Fixed answer here"
    assert body["usage"]["completion_tokens"] == 3


async def test_chat_stream(sim: Sim) -> None:
    response = await sim.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=OPENAI_AUTH)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = await sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == [
        "This",
        " is",
        " a",
        " simulated",
        " reply.",
    ]
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert all(c["object"] == "chat.completion.chunk" and "usage" not in c for c in chunks)
    assert len({c["id"] for c in chunks}) == 1


async def test_chat_stream_include_usage(sim: Sim) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 3}
    response = await sim.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    events = await sse_events(response)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert all(event["usage"] is None for event in events[:-2])
    assert events[-3]["choices"][0]["finish_reason"] == "length"
    assert content_of(events) == "This is a"


async def test_stream_options_needs_stream(sim: Sim) -> None:
    body = {**CHAT, "stream_options": {"include_usage": True}}
    response = await sim.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == "stream_options"
    assert error["type"] == "invalid_request_error"


async def test_text_completion(sim: Sim) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say something nice"}
    response = await sim.post("/v1/completions", json=body, headers=OPENAI_AUTH)
    data = await response.json()
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == "This is a simulated reply."
    assert data["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}

    stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    response = await sim.post("/v1/completions", json=stream_body, headers=OPENAI_AUTH)
    events = await sse_events(response)
    assert "".join(e["choices"][0]["text"] for e in events[:-2]) == "This is a simulated reply."
    assert events[-3]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["total_tokens"] == 9


async def test_embeddings_float_and_base64(sim: Sim) -> None:
    body = {"model": "text-embedding-3-small", "input": ["one", "two"], "dimensions": 4}
    response = await sim.post("/v1/embeddings", json=body, headers=OPENAI_AUTH)
    data = await response.json()
    assert data["object"] == "list"
    assert data["model"] == "text-embedding-3-small"
    assert [item["index"] for item in data["data"]] == [0, 1]
    floats = [item["embedding"] for item in data["data"]]
    assert all(len(vector) == 4 for vector in floats)
    assert floats[0] != floats[1]
    assert data["usage"] == {"prompt_tokens": 2, "total_tokens": 2}

    response = await sim.post("/v1/embeddings", json={**body, "encoding_format": "base64"}, headers=OPENAI_AUTH)
    encoded = [item["embedding"] for item in (await response.json())["data"]]
    decoded = [list(struct.unpack("<4f", base64.b64decode(text))) for text in encoded]
    assert decoded == floats


async def test_embeddings_reject_bad_input(sim: Sim) -> None:
    for body in (
        {"model": "e", "input": [{"x": 1}]},
        {"model": "e", "input": "x", "encoding_format": "int8"},
        {"model": "e"},
    ):
        response = await sim.post("/v1/embeddings", json=body, headers=OPENAI_AUTH)
        assert response.status == 400, body


async def test_models(sim: Sim) -> None:
    response = await sim.get("/v1/models", headers=OPENAI_AUTH)
    listing = await response.json()
    assert listing["object"] == "list"
    assert listing["data"][0]["object"] == "model"
    response = await sim.get("/v1/models/gpt-4o", headers=OPENAI_AUTH)
    assert (await response.json())["id"] == "gpt-4o"
    assert (await sim.get("/v1/models")).status == 401


async def test_bad_keys_get_openai_401(sim: Sim) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"api-key": "sim-key"}):
        response = await sim.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert response.status == 401
        body = await response.json()
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["param"] is None
        assert body["error"]["code"] == "invalid_api_key"


async def test_model_and_json_required(sim: Sim) -> None:
    response = await sim.post("/v1/chat/completions", json={"messages": CHAT["messages"]}, headers=OPENAI_AUTH)
    assert response.status == 400
    assert (await response.json())["error"]["type"] == "invalid_request_error"
    response = await sim.post("/v1/chat/completions", data=b"{not json", headers=OPENAI_AUTH)
    assert response.status == 400
    response = await sim.post("/v1/chat/completions", json={"model": "m"}, headers=OPENAI_AUTH)
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "messages"


async def test_unknown_route_is_a_json_404(sim: Sim) -> None:
    response = await sim.post("/v1/nothing", json={}, headers=OPENAI_AUTH)
    assert response.status == 404
    assert "error" in await response.json()


async def test_latencies(make_sim: MakeSim) -> None:
    sim = await make_sim(first_byte_latency_s=0.1, latency_per_token_s=0.02)
    started = time.monotonic()
    response = await sim.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=OPENAI_AUTH)
    assert time.monotonic() - started >= 0.09  # nothing, not even headers, before the first-byte delay
    first = await response.content.readuntil(b"\n\n")
    first_at = time.monotonic()
    await response.read()
    # Six more frames after the first (five words, the finish chunk, [DONE]), 20 ms apart.
    assert time.monotonic() - first_at >= 6 * 0.02 * 0.9
    assert b'"role":"assistant"' in first
