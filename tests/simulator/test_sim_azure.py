"""The Azure OpenAI dialect: deployment routes, api-version rules, api-key auth, filter chunks."""

from __future__ import annotations

import uuid

import pytest

from tests.simulator.simhelpers import AZURE_AUTH, CHAT, Sim, content_of, sse_events

CHAT_PATH = "/openai/deployments/my-dep/chat/completions"
GA = {"api-version": "2024-10-21"}
OLD = {"api-version": "2024-08-01-preview"}


async def test_chat_completion(sim: Sim) -> None:
    response = await sim.post(CHAT_PATH, params=GA, json=CHAT, headers=AZURE_AUTH)
    assert response.status == 200
    uuid.UUID(response.headers["apim-request-id"])
    assert response.headers["x-request-id"]
    body = await response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "my-dep"  # the path's deployment wins over the body's model
    assert body["choices"][0]["message"]["content"] == "This is a simulated reply."
    assert body["choices"][0]["content_filter_results"] == {}
    assert body["prompt_filter_results"] == [{"prompt_index": 0, "content_filter_results": {}}]
    assert body["usage"]["total_tokens"] == 10


async def test_bearer_key_is_accepted(sim: Sim) -> None:
    headers = {"Authorization": "Bearer sim-key"}
    response = await sim.post(CHAT_PATH, params=GA, json=CHAT, headers=headers)
    assert response.status == 200


@pytest.mark.parametrize("headers", [{}, {"api-key": "wrong"}, {"Authorization": "Bearer wrong"}])
async def test_bad_keys_get_azure_401(sim: Sim, headers: dict[str, str]) -> None:
    response = await sim.post(CHAT_PATH, params=GA, json=CHAT, headers=headers)
    assert response.status == 401
    error = (await response.json())["error"]
    assert error["code"] == "401"
    assert error["message"].startswith("Access denied due to invalid subscription key or wrong API endpoint.")


async def test_stream_starts_with_the_prompt_filter_chunk(sim: Sim) -> None:
    response = await sim.post(CHAT_PATH, params=GA, json={**CHAT, "stream": True}, headers=AZURE_AUTH)
    events = await sse_events(response)
    assert events[0] == {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        "choices": [],
    }
    assert events[1]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(e["choices"][0]["content_filter_results"] == {} for e in events[1:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]"
    assert content_of(events) == "This is a simulated reply."
    assert not any("usage" in e for e in events[:-1])


async def test_stream_include_usage(sim: Sim) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = await sim.post(CHAT_PATH, params=GA, json=body, headers=AZURE_AUTH)
    events = await sse_events(response)
    assert events[0]["prompt_filter_results"] and events[0]["usage"] is None
    assert all(e["usage"] is None for e in events[:-2])
    assert events[-2]["choices"] == []
    assert events[-2]["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


async def test_missing_api_version(sim: Sim) -> None:
    response = await sim.post(CHAT_PATH, json=CHAT, headers=AZURE_AUTH)
    assert response.status == 400
    assert await response.json() == {
        "error": {"code": "BadRequest", "message": "Missing required query parameter: api-version"}
    }


@pytest.mark.parametrize("version", ["2024-10", "latest", "2024-10-21-beta", "v1"])
async def test_malformed_api_version(sim: Sim, version: str) -> None:
    response = await sim.post(CHAT_PATH, params={"api-version": version}, json=CHAT, headers=AZURE_AUTH)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "BadRequest"


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"stream": True, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"max_completion_tokens": 5}, "max_completion_tokens"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ],
)
async def test_old_versions_reject_new_parameters(sim: Sim, extra: dict[str, object], name: str) -> None:
    response = await sim.post(CHAT_PATH, params=OLD, json={**CHAT, **extra}, headers=AZURE_AUTH)
    assert response.status == 400
    assert await response.json() == {
        "error": {
            "message": f"Unrecognized request argument supplied: {name}",
            "type": "invalid_request_error",
            "param": "",
            "code": None,
        }
    }
    preview = {"api-version": "2024-09-01-preview"}
    response = await sim.post(CHAT_PATH, params=preview, json={**CHAT, **extra}, headers=AZURE_AUTH)
    assert response.status == 200


async def test_old_versions_serve_plain_requests(sim: Sim) -> None:
    body = {**CHAT, "stream": True, "max_tokens": 1}
    response = await sim.post(CHAT_PATH, params={"api-version": "2023-05-15"}, json=body, headers=AZURE_AUTH)
    assert response.status == 200
    assert content_of(await sse_events(response)) == "This"


async def test_completions_and_embeddings(sim: Sim) -> None:
    response = await sim.post(
        "/openai/deployments/instruct/completions",
        params=GA,
        json={"prompt": "Once upon a time"},
        headers=AZURE_AUTH,
    )
    body = await response.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["content_filter_results"] == {}

    response = await sim.post(
        "/openai/deployments/embed/embeddings", params=GA, json={"input": "hello"}, headers=AZURE_AUTH
    )
    body = await response.json()
    assert body["model"] == "embed"
    assert len(body["data"][0]["embedding"]) == 16


async def test_percent_encoded_deployment(sim: Sim) -> None:
    response = await sim.post(
        "/openai/deployments/dep%2Fwith%20slash/chat/completions", params=GA, json=CHAT, headers=AZURE_AUTH
    )
    assert response.status == 200
    assert (await response.json())["model"] == "dep/with slash"
