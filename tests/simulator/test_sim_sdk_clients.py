"""The real SDKs against the simulator: what they send, it must accept, and what it answers, they parse."""

from __future__ import annotations

import openai
import pytest
from azure.ai.inference.aio import ChatCompletionsClient
from azure.ai.inference.models import UserMessage
from azure.core.credentials import AzureKeyCredential
from openai import AsyncAzureOpenAI, AsyncOpenAI

from tests.simulator.simhelpers import Sim

MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi there"}]


async def test_openai_client(sim: Sim) -> None:
    client = AsyncOpenAI(base_url=str(sim.make_url("/v1")), api_key="sim-key", max_retries=0)
    async with client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert completion.choices[0].message.content == "This is a simulated reply."
        assert completion.usage is not None and completion.usage.completion_tokens == 5

        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        parts: list[str] = []
        usage = None
        async for chunk in stream:
            parts.extend(choice.delta.content or "" for choice in chunk.choices)
            usage = chunk.usage or usage
        assert "".join(parts) == "This is a simulated reply."
        assert usage is not None and usage.total_tokens == 7

        embedding = await client.embeddings.create(model="text-embedding-3-small", input="hello")
        assert len(embedding.data[0].embedding) == 16  # the SDK asked for base64 and decoded it

        models = await client.models.list()
        assert [model.id async for model in models] == ["sim-model"]


async def test_openai_client_sees_errors(sim: Sim) -> None:
    client = AsyncOpenAI(base_url=str(sim.make_url("/v1")), api_key="wrong", max_retries=0)
    async with client:
        with pytest.raises(openai.AuthenticationError) as info:
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert info.value.code == "invalid_api_key"


async def test_azure_openai_client(sim: Sim) -> None:
    client = AsyncAzureOpenAI(
        azure_endpoint=str(sim.make_url("")), api_version="2024-10-21", api_key="sim-key", max_retries=0
    )
    async with client:
        completion = await client.chat.completions.create(model="my-dep", messages=MESSAGES, max_tokens=2)
        assert completion.choices[0].message.content == "This is"
        assert completion.choices[0].finish_reason == "length"

        stream = await client.chat.completions.create(model="my-dep", messages=MESSAGES, stream=True)
        parts = [choice.delta.content or "" async for chunk in stream for choice in chunk.choices]
        assert "".join(parts) == "This is a simulated reply."

    recorded = await (await sim.get("/_sim/requests")).json()
    assert recorded[0]["path"] == "/openai/deployments/my-dep/chat/completions"
    assert recorded[0]["query"] == {"api-version": "2024-10-21"}
    assert recorded[0]["headers"]["api-key"] == "sim-key"


async def test_azure_ai_inference_client(sim: Sim) -> None:
    client = ChatCompletionsClient(
        endpoint=str(sim.make_url("/models")),
        credential=AzureKeyCredential("sim-key"),
        api_version="2025-04-01",
        retry_total=0,
    )
    async with client:
        result = await client.complete(messages=[UserMessage("Hi there")], model="Phi-4")
        assert result.choices[0].message.content == "This is a simulated reply."
        assert result.usage.total_tokens == 7

        stream = await client.complete(messages=[UserMessage("Hi there")], model="Phi-4", stream=True)
        parts: list[str] = []
        usage = None
        async for update in stream:
            parts.extend(choice.delta.content or "" for choice in update.choices)
            usage = update.usage or usage
        assert "".join(parts) == "This is a simulated reply."
        assert usage is not None and usage.total_tokens == 7

        info = await client.get_model_info()
        assert info.model_provider_name == "Simulator"
