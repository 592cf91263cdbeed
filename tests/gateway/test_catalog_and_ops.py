"""Model listings from config, Foundry's /info, embeddings and completions, and the ops routes."""

from __future__ import annotations

import aiohttp
import openai
import pytest
from azure.ai.inference.aio import ChatCompletionsClient, EmbeddingsClient
from azure.core.credentials import AzureKeyCredential

from tests.gateway.test_upstream_answers import one_deployment
from tests.harness import OTHER_TEAM_KEY, TEAM_KEY, Served, free_port, gateway, sim_requests


async def test_openai_sdk_lists_the_teams_models(gw: Served) -> None:
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=OTHER_TEAM_KEY, max_retries=0) as client:
        models = [m.id async for m in client.models.list()]
        assert models == ["m-openai"]  # team-b may use only this one
        assert (await client.models.retrieve("m-openai")).id == "m-openai"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("m-azure")


async def test_azure_sdk_lists_models(gw: Served) -> None:
    client = openai.AsyncAzureOpenAI(azure_endpoint=gw.url, api_version="2024-10-21", api_key=TEAM_KEY, max_retries=0)
    async with client:
        models = {m.id async for m in client.models.list()}
    assert models == {"m-openai", "m-azure", "m-azure-old", "m-foundry"}


async def test_inference_sdk_model_info(gw: Served) -> None:
    async with ChatCompletionsClient(
        endpoint=gw.url, credential=AzureKeyCredential(OTHER_TEAM_KEY), retry_total=0
    ) as client:
        info = await client.get_model_info()  # no model named: the team's only one
    assert info.model_name == "gpt-4o-2024-08-06"
    assert info.model_provider_name == "OpenAI"


@pytest.mark.parametrize("target", ["openai", "azure", "foundry"])
async def test_embeddings_reach_each_dialect(gw: Served, sim: Served, target: str) -> None:
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0) as client:
        result = await client.embeddings.create(model=f"m-{target}", input=["one", "two"])
    assert len(result.data) == 2 and len(result.data[0].embedding) > 0
    (upstream,) = await sim_requests(sim)
    assert upstream["path"].endswith("/embeddings")
    assert upstream["body"]["input"] == ["one", "two"]


async def test_inference_embeddings_client(gw: Served, sim: Served) -> None:
    async with EmbeddingsClient(endpoint=gw.url, credential=AzureKeyCredential(TEAM_KEY), retry_total=0) as client:
        result = await client.embed(input=["hello"], model="m-azure")
    assert len(result.data) == 1
    (upstream,) = await sim_requests(sim)
    assert upstream["path"] == "/openai/deployments/gpt-4o-east/embeddings"


async def test_completions_and_their_absence_on_foundry(gw: Served) -> None:
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0) as client:
        result = await client.completions.create(model="m-azure", prompt="Once upon a time")
        assert result.choices[0].text
        with pytest.raises(openai.BadRequestError, match="no /completions"):
            await client.completions.create(model="m-foundry", prompt="Once")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gw.url}/completions?api-version=2024-05-01-preview", json={}) as resp:
            assert resp.status == 404  # Foundry has no /completions route


async def test_old_azure_api_version_gets_rewritten_body(gw: Served, sim: Served) -> None:
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="m-azure-old",
            messages=[{"role": "user", "content": "hi"}],
            max_completion_tokens=50,
            parallel_tool_calls=False,
            store=True,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    (upstream,) = await sim_requests(sim)
    body = upstream["body"]
    assert upstream["query"] == {"api-version": "2024-06-01"}
    assert body["max_tokens"] == 50
    for dropped in ("max_completion_tokens", "parallel_tool_calls", "store", "stream_options"):
        assert dropped not in body
    # The client asked for usage; the target cannot send it, so the gateway synthesizes the chunk.
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0].usage.completion_tokens > 0  # type: ignore[union-attr]


async def test_data_sources_to_a_non_azure_target_says_why(gw: Served) -> None:
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError, match="Azure OpenAI field") as err:
            await client.chat.completions.create(
                model="m-openai", messages=[{"role": "user", "content": "hi"}], extra_body={"data_sources": []}
            )
    assert err.value.param == "data_sources"  # type: ignore[attr-defined]


async def test_health_and_readiness(gw: Served) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gw.url}/healthz") as resp:
            assert resp.status == 200
        async with session.get(f"{gw.url}/readyz") as resp:
            assert resp.status == 200


async def test_readiness_follows_the_store_unless_the_probe_says_it_is_optional() -> None:
    config = one_deployment("http://127.0.0.1:9", store=f"redis://127.0.0.1:{free_port()}/0")
    async with gateway(config) as gw, aiohttp.ClientSession() as session:
        async with session.get(f"{gw.url}/readyz") as resp:
            assert (resp.status, await resp.json()) == (
                503,
                {"status": "unready", "reason": "the store does not answer"},
            )
        # Every replica shares the store: a probe that must not take them all out of service.
        async with session.get(f"{gw.url}/readyz?store=optional") as resp:
            assert (resp.status, await resp.json()) == (200, {"status": "ready", "store": "unreachable"})
