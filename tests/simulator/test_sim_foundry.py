"""The Foundry (Azure AI Model Inference) dialect: routes, api-versions, extra-parameters, /info."""

from __future__ import annotations

import pytest

from tests.simulator.simhelpers import AZURE_AUTH, Sim, content_of, sse_events

PREVIEW = {"api-version": "2024-05-01-preview"}
GA = {"api-version": "2025-04-01"}
SDK_AUTH = {"api-key": "sim-key", "Authorization": "Bearer sim-key"}
MESSAGES = [{"role": "user", "content": "Hello there, simulator!"}]
EXTRA_ERROR = (
    "Extra parameters {names} are not allowed when extra-parameters is not set or set to be 'error'. "
    "Set extra-parameters to 'pass-through' to pass to the model."
)


@pytest.mark.parametrize("path", ["/chat/completions", "/models/chat/completions"])
async def test_chat_completion(sim: Sim, path: str) -> None:
    response = await sim.post(path, params=GA, json={"messages": MESSAGES}, headers=SDK_AUTH)
    assert response.status == 200
    assert response.headers["apim-request-id"]
    body = await response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "sim-model"
    assert body["choices"][0]["message"]["content"] == "This is a simulated reply."
    assert "prompt_filter_results" not in body
    assert body["usage"]["total_tokens"] == 10


async def test_stream_puts_usage_on_the_final_chunk(sim: Sim) -> None:
    body = {"model": "Phi-4", "messages": MESSAGES, "stream": True}
    response = await sim.post("/models/chat/completions", params=PREVIEW, json=body, headers=SDK_AUTH)
    events = await sse_events(response)
    assert events[-1] == "[DONE]"
    final = events[-2]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert all(e["choices"] and "usage" not in e for e in events[:-2])
    assert events[0]["model"] == "Phi-4"
    assert content_of(events) == "This is a simulated reply."


async def test_either_key_header_is_enough(sim: Sim) -> None:
    for headers in (AZURE_AUTH, {"Authorization": "Bearer sim-key"}):
        response = await sim.post("/chat/completions", params=GA, json={"messages": MESSAGES}, headers=headers)
        assert response.status == 200


async def test_bad_key_gets_azure_401(sim: Sim) -> None:
    response = await sim.post("/chat/completions", params=GA, json={"messages": MESSAGES})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "401"
    assert response.headers["x-ms-error-code"] == "401"


@pytest.mark.parametrize("query", [{}, {"api-version": "2024-10-21"}])
async def test_api_version_is_checked(sim: Sim, query: dict[str, str]) -> None:
    response = await sim.post("/chat/completions", params=query, json={"messages": MESSAGES}, headers=SDK_AUTH)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["code"] == "BadRequest"
    assert error["message"]


async def test_extra_parameters_are_refused_by_default(sim: Sim) -> None:
    body = {"messages": MESSAGES, "user": "u1", "temperature": 0.5, "n": 2}
    for headers in (SDK_AUTH, {**SDK_AUTH, "extra-parameters": "error"}):
        response = await sim.post("/chat/completions", params=GA, json=body, headers=headers)
        assert response.status == 400
        assert await response.json() == {"detail": EXTRA_ERROR.format(names="['user', 'n']")}


async def test_extra_parameters_drop(sim: Sim) -> None:
    body = {"messages": MESSAGES, "max_completion_tokens": 1, "n": 2}
    headers = {**SDK_AUTH, "extra-parameters": "drop"}
    response = await sim.post("/chat/completions", params=GA, json=body, headers=headers)
    assert response.status == 200
    # Dropped before the model saw it, so max_completion_tokens did not truncate the reply.
    assert (await response.json())["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("mode", ["pass-through", "allow"])
async def test_extra_parameters_pass_through(sim: Sim, mode: str) -> None:
    body = {"messages": MESSAGES, "max_completion_tokens": 1, "n": 2}
    headers = {**SDK_AUTH, "extra-parameters": mode}
    response = await sim.post("/chat/completions", params=GA, json=body, headers=headers)
    assert response.status == 200
    assert (await response.json())["choices"][0]["finish_reason"] == "length"


async def test_invalid_extra_parameters_value(sim: Sim) -> None:
    headers = {**SDK_AUTH, "extra-parameters": "ignore"}
    response = await sim.post("/chat/completions", params=GA, json={"messages": MESSAGES}, headers=headers)
    assert response.status == 400
    assert await response.json() == {
        "detail": "Unexpected EXTRA_PARAMETERS option ignore, expected options are ['error', 'drop', 'pass-through']"
    }


async def test_embeddings(sim: Sim) -> None:
    body = {"input": ["a", "b"], "input_type": "query", "encoding_format": "float", "dimensions": 3}
    response = await sim.post("/models/embeddings", params=GA, json=body, headers=SDK_AUTH)
    data = await response.json()
    assert [len(item["embedding"]) for item in data["data"]] == [3, 3]
    response = await sim.post("/embeddings", params=GA, json={**body, "user": "x"}, headers=SDK_AUTH)
    assert response.status == 400
    assert await response.json() == {"detail": EXTRA_ERROR.format(names="['user']")}


async def test_missing_messages_is_a_422(sim: Sim) -> None:
    response = await sim.post("/chat/completions", params=GA, json={"model": "m"}, headers=SDK_AUTH)
    assert response.status == 422
    detail = (await response.json())["detail"]
    assert detail[0]["loc"] == ["body", "messages"]


@pytest.mark.parametrize("path", ["/info", "/models/info"])
async def test_info(sim: Sim, path: str) -> None:
    response = await sim.get(path, params=PREVIEW, headers=SDK_AUTH)
    assert await response.json() == {
        "model_name": "sim-model",
        "model_type": "chat-completions",
        "model_provider_name": "Simulator",
    }
    response = await sim.get(path, params={**GA, "model": "Phi-4"}, headers=SDK_AUTH)
    assert (await response.json())["model_name"] == "Phi-4"
    assert (await sim.get(path, headers=SDK_AUTH)).status == 400
    assert (await sim.get(path, params=GA)).status == 401


async def test_deployment_header_is_recorded_and_targets_the_deployment(sim: Sim) -> None:
    await sim.post("/_sim/faults", json={"match": "blue", "status": 503})
    headers = {**SDK_AUTH, "azureml-model-deployment": "blue"}
    response = await sim.post("/chat/completions", params=GA, json={"messages": MESSAGES}, headers=headers)
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "ServiceUnavailable"
    recorded = await (await sim.get("/_sim/requests")).json()
    assert recorded[-1]["headers"]["azureml-model-deployment"] == "blue"


async def test_no_legacy_completions(sim: Sim) -> None:
    response = await sim.post("/completions", params=GA, json={"prompt": "x"}, headers=SDK_AUTH)
    assert response.status == 404
