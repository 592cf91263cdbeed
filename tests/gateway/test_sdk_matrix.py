"""The official clients, each against each dialect of deployment, streaming and not.

The upstream is the simulator, which records exactly what it received: the path, api-version,
auth headers and body the real service expects, and never the caller's key.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest
from azure.ai.inference.aio import ChatCompletionsClient
from azure.core.credentials import AzureKeyCredential

from tests.harness import SIM_KEY, TEAM_KEY, Served, sim_requests

REPLY = "This is a simulated reply."
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say something."}]

EXPECTED_UPSTREAM: dict[str, dict[str, Any]] = {
    "openai": {
        "path": "/v1/chat/completions",
        "query": {},
        "auth": {"authorization": f"Bearer {SIM_KEY}"},
        "absent": ["api-key"],
        "model": "gpt-4o-2024-08-06",
    },
    "azure": {
        "path": "/openai/deployments/gpt-4o-east/chat/completions",
        "query": {"api-version": "2024-10-21"},
        "auth": {"api-key": SIM_KEY},
        "absent": ["authorization"],
        "model": "gpt-4o-east",
    },
    "foundry": {
        "path": "/models/chat/completions",
        "query": {"api-version": "2024-05-01-preview"},
        "auth": {"api-key": SIM_KEY, "authorization": f"Bearer {SIM_KEY}", "azureml-model-deployment": "llama-blue"},
        "absent": [],
        "model": "Llama-3.3-70B-Instruct",
    },
}

CLIENTS = ["openai", "azure_openai", "inference"]
TARGETS = ["openai", "azure", "foundry"]


async def _call(client: str, gw: Served, model: str, stream: bool) -> str:
    """Call the gateway with a real SDK; return the reply text it parsed."""
    if client in ("openai", "azure_openai"):
        sdk: openai.AsyncOpenAI
        if client == "openai":
            sdk = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0)
        else:
            sdk = openai.AsyncAzureOpenAI(
                azure_endpoint=gw.url, api_version="2024-10-21", api_key=TEAM_KEY, max_retries=0
            )
        async with sdk:
            if not stream:
                completion = await sdk.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]
                return completion.choices[0].message.content or ""
            parts = []
            events = await sdk.chat.completions.create(model=model, messages=MESSAGES, stream=True)  # type: ignore[arg-type]
            async for chunk in events:
                # The usage-only chunk the gateway asked for is withheld. (Foundry upstreams put usage
                # on their last content chunk themselves; that chunk passes unchanged.)
                assert not (chunk.usage and not chunk.choices), "withheld usage chunk reached the client"
                parts.extend(choice.delta.content or "" for choice in chunk.choices)
            return "".join(parts)
    inference = ChatCompletionsClient(endpoint=gw.url, credential=AzureKeyCredential(TEAM_KEY), retry_total=0)
    async with inference:
        if not stream:
            result = await inference.complete(messages=MESSAGES, model=model)
            return str(result.choices[0].message.content)
        parts = []
        response = await inference.complete(messages=MESSAGES, model=model, stream=True)
        async for update in response:
            parts.extend(choice.delta.content or "" for choice in update.choices)
        return "".join(parts)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("client", CLIENTS)
async def test_sdk_reaches_each_dialect(gw: Served, sim: Served, client: str, target: str, stream: bool) -> None:
    text = await _call(client, gw, f"m-{target}", stream)
    assert text == REPLY

    recorded = await sim_requests(sim)
    assert len(recorded) == 1
    upstream = recorded[0]
    expected = EXPECTED_UPSTREAM[target]
    assert upstream["method"] == "POST"
    assert upstream["path"] == expected["path"]
    assert upstream["query"] == expected["query"]
    for name, value in expected["auth"].items():
        assert upstream["headers"].get(name) == value, name
    for name in expected["absent"]:
        assert name not in upstream["headers"]
    body = upstream["body"]
    assert body["model"] == expected["model"]
    assert body["messages"] == MESSAGES
    # The caller's key never leaves the gateway.
    assert TEAM_KEY not in repr(upstream)
    if stream:
        assert body["stream"] is True
        if target == "foundry":
            assert "stream_options" not in body  # not a Foundry parameter; usage is read off the last chunk
        else:
            assert body["stream_options"] == {"include_usage": True}
