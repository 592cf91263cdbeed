"""Errors reach each official client in a shape it parses into its own exception type."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from azure.ai.inference.aio import ChatCompletionsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

from tests.harness import TEAM_KEY, Served, sim_fault

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


def _openai(gw: Served, key: str = TEAM_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def _azure(gw: Served, key: str = TEAM_KEY) -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(azure_endpoint=gw.url, api_version="2024-10-21", api_key=key, max_retries=0)


def _inference(gw: Served, key: str = TEAM_KEY) -> ChatCompletionsClient:
    return ChatCompletionsClient(endpoint=gw.url, credential=AzureKeyCredential(key), retry_total=0)


@pytest.mark.parametrize("make", [_openai, _azure], ids=["openai", "azure"])
async def test_openai_clients_get_typed_errors(gw: Served, sim: Served, make: Any) -> None:
    async with make(gw, "not-a-key") as client:
        with pytest.raises(openai.AuthenticationError) as auth:
            await client.chat.completions.create(model="m-openai", messages=MESSAGES)
    assert auth.value.status_code == 401
    async with make(gw) as client:
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(model="no-such-model", messages=MESSAGES)
        assert "no-such-model" in str(missing.value)

        await sim_fault(sim, match="/chat/completions", status=429, retry_after_ms=1500)
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(model="m-azure", messages=MESSAGES)
        assert limited.value.status_code == 429
        assert limited.value.response.headers["retry-after-ms"] == "1500"
        assert limited.value.response.headers["retry-after"] == "2"

        await sim_fault(sim, match="/chat/completions", status=500)
        with pytest.raises(openai.InternalServerError) as broken:
            await client.chat.completions.create(model="m-foundry", messages=MESSAGES)
        assert broken.value.status_code == 500


async def test_inference_client_gets_typed_errors(gw: Served, sim: Served) -> None:
    async with _inference(gw, "not-a-key") as client:
        with pytest.raises(ClientAuthenticationError) as auth:
            await client.complete(messages=MESSAGES, model="m-openai")
    assert auth.value.status_code == 401
    assert auth.value.error is not None and auth.value.error.code == "401"
    async with _inference(gw) as client:
        with pytest.raises(ResourceNotFoundError) as missing:
            await client.complete(messages=MESSAGES, model="no-such-model")
        assert missing.value.status_code == 404

        await sim_fault(sim, match="/v1/chat/completions", status=429, retry_after_ms=0)
        with pytest.raises(HttpResponseError) as limited:
            await client.complete(messages=MESSAGES, model="m-openai")
        assert limited.value.status_code == 429
        assert limited.value.error is not None and limited.value.error.code == "rate_limit_exceeded"

        await sim_fault(sim, match="/chat/completions", status=500)
        with pytest.raises(HttpResponseError) as broken:
            await client.complete(messages=MESSAGES, model="m-azure")
        assert broken.value.status_code == 500
        assert broken.value.error is not None and broken.value.error.message


async def test_foundry_422_detail_becomes_an_openai_error_naming_the_param(gw: Served, sim: Served) -> None:
    detail = [
        {"type": "extra_forbidden", "loc": ["body", "frequency_penalty"], "msg": "Extra inputs are not permitted"}
    ]
    await sim_fault(sim, match="/models/chat/completions", status=422, body={"detail": detail})
    async with _openai(gw) as client:
        with pytest.raises(openai.UnprocessableEntityError) as err:
            await client.chat.completions.create(model="m-foundry", messages=MESSAGES, frequency_penalty=0.0)
    assert err.value.status_code == 422
    body: Any = err.value.body
    assert body["param"] == "frequency_penalty"
    assert "Extra inputs are not permitted" in body["message"]
