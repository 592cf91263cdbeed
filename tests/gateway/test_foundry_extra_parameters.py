"""Foundry's ``extra-parameters``: the caller's header is enforced by the gateway, the deployment's
setting decides what reaches a Foundry upstream."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from azure.ai.inference.aio import ChatCompletionsClient
from azure.core.credentials import AzureKeyCredential

from tests.harness import TEAM_KEY, Served, gateway, matrix_config, sim_requests

DETAIL = (
    "Extra parameters ['n', 'logit_bias'] are not allowed when extra-parameters is not set or set to be 'error'. "
    "Set extra-parameters to 'pass-through' to pass to the model."
)


async def _foundry_call(gw: Served, model: str, headers: dict[str, str]) -> tuple[int, Any]:
    body = {"messages": [{"role": "user", "content": "hi"}], "model": model, "n": 1, "logit_bias": {}}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{gw.url}/chat/completions?api-version=2024-05-01-preview",
            headers={"api-key": TEAM_KEY, **headers},
            data=orjson.dumps(body),
        ) as resp,
    ):
        return resp.status, orjson.loads(await resp.read())


@pytest.mark.parametrize("header", [None, "error"])
async def test_error_or_absent_answers_400_with_detail(gw: Served, sim: Served, header: str | None) -> None:
    status, payload = await _foundry_call(gw, "m-openai", {"extra-parameters": header} if header else {})
    assert status == 400
    assert payload == {"detail": DETAIL}
    assert await sim_requests(sim) == []


async def test_drop_strips_them(gw: Served, sim: Served) -> None:
    status, _ = await _foundry_call(gw, "m-openai", {"extra-parameters": "drop"})
    assert status == 200
    (upstream,) = await sim_requests(sim)
    assert "n" not in upstream["body"] and "logit_bias" not in upstream["body"]


@pytest.mark.parametrize(
    "header", [{"extra-parameters": "pass-through"}, {"extra-parameters": "allow"}, {"unknown_params": "pass_through"}]
)
async def test_pass_through_forwards_them(gw: Served, sim: Served, header: dict[str, str]) -> None:
    status, _ = await _foundry_call(gw, "m-azure", header)
    assert status == 200
    (upstream,) = await sim_requests(sim)
    assert upstream["body"]["n"] == 1
    assert upstream["body"]["logit_bias"] == {}


async def test_unknown_mode_is_refused_as_the_service_does(gw: Served) -> None:
    status, payload = await _foundry_call(gw, "m-openai", {"extra-parameters": "ignore"})
    assert status == 400
    assert payload == {
        "detail": "Unexpected EXTRA_PARAMETERS option ignore, expected options are ['error', 'drop', 'pass-through']"
    }


async def test_deployment_drop_strips_before_a_foundry_upstream(gw: Served, sim: Served) -> None:
    """The caller passes them through; the deployment (extra_parameters: drop) still decides."""
    status, _ = await _foundry_call(gw, "m-foundry", {"extra-parameters": "pass-through"})
    assert status == 200
    (upstream,) = await sim_requests(sim)
    assert "n" not in upstream["body"]
    assert "extra-parameters" not in upstream["headers"]


async def test_deployment_pass_through_sends_the_header(sim: Served) -> None:
    async with gateway(matrix_config(sim.url, foundry_extra="pass-through")) as gw:
        async with ChatCompletionsClient(
            endpoint=gw.url, credential=AzureKeyCredential(TEAM_KEY), retry_total=0
        ) as client:
            result = await client.complete(
                messages=[{"role": "user", "content": "hi"}], model="m-foundry", model_extras={"n": 1}
            )
        assert result.choices[0].message.content
    (upstream,) = await sim_requests(sim)
    assert upstream["headers"]["extra-parameters"] == "pass-through"
    assert upstream["body"]["n"] == 1


async def test_deployment_error_refuses_in_the_callers_dialect(sim: Served) -> None:
    async with gateway(matrix_config(sim.url, foundry_extra="error")) as gw:
        body = {"model": "m-foundry", "messages": [{"role": "user", "content": "hi"}], "n": 2}
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {TEAM_KEY}"}, json=body
            ) as resp,
        ):
            assert resp.status == 400
            error = (await resp.json())["error"]
    assert error["param"] == "n"
    assert "Extra parameters ['n']" in error["message"]
    assert await sim_requests(sim) == []
