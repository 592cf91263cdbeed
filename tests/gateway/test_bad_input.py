"""Every row of DESIGN.md's "Bad input" table, in each caller's dialect."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from tests.harness import OTHER_TEAM_KEY, TEAM_KEY, Served, sim_requests

GOOD_BODY = {"messages": [{"role": "user", "content": "hi"}]}


@dataclass(frozen=True)
class Caller:
    """How one dialect's client addresses the gateway."""

    name: str

    def url(self, base: str, model: str = "m-openai", api_version: str | None = "default") -> str:
        if self.name == "openai":
            return f"{base}/v1/chat/completions"
        version = (
            {"azure": "2024-10-21", "foundry": "2024-05-01-preview"}[self.name]
            if api_version == "default"
            else api_version
        )
        query = "" if version is None else f"?api-version={version}"
        if self.name == "azure":
            return f"{base}/openai/deployments/{model}/chat/completions{query}"
        return f"{base}/chat/completions{query}"

    def headers(self, key: str | None = TEAM_KEY, model: str = "m-openai") -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers.update({"Authorization": f"Bearer {key}"} if self.name == "openai" else {"api-key": key})
        if self.name == "foundry":
            headers["azureml-model-deployment"] = model
        return headers

    def body(self, model: str = "m-openai", **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {**GOOD_BODY, **fields}
        if self.name == "openai":
            body["model"] = model
        return body

    def check_shape(self, status: int, payload: dict[str, Any], headers: Any) -> str:
        """Assert the error is in this dialect's shape; return its message."""
        error = payload["error"]
        assert isinstance(error["message"], str) and error["message"]
        if self.name == "openai":
            assert set(error) == {"message", "type", "param", "code"}
        else:
            assert isinstance(error["code"], str)
            assert headers["x-ms-error-code"] == error["code"]
        return str(error["message"])


CALLERS = [Caller("openai"), Caller("azure"), Caller("foundry")]


async def _post(url: str, headers: dict[str, str], data: bytes) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers, data=data) as resp:
        return resp.status, orjson.loads(await resp.read()), resp.headers


@pytest.fixture(params=CALLERS, ids=lambda c: c.name)
def caller(request: pytest.FixtureRequest) -> Caller:
    return request.param  # type: ignore[no-any-return]


async def test_malformed_json(gw: Served, caller: Caller) -> None:
    status, payload, headers = await _post(caller.url(gw.url), caller.headers(), b'{"messages": [')
    assert status == 400
    assert "not valid JSON" in caller.check_shape(status, payload, headers)


async def test_missing_messages(gw: Served, caller: Caller) -> None:
    body = caller.body()
    del body["messages"]
    status, payload, headers = await _post(caller.url(gw.url), caller.headers(), orjson.dumps(body))
    assert status == 400
    assert "'messages'" in caller.check_shape(status, payload, headers)


@pytest.mark.parametrize(
    ("field", "value"), [("max_tokens", "ten"), ("temperature", "hot"), ("stream", "yes"), ("messages", "hi")]
)
async def test_wrong_types_name_the_field(gw: Served, caller: Caller, field: str, value: Any) -> None:
    body = caller.body(**{field: value})
    status, payload, headers = await _post(caller.url(gw.url), caller.headers(), orjson.dumps(body))
    assert status == 400
    assert f"'{field}'" in caller.check_shape(status, payload, headers)


async def test_oversize_body(gw: Served, sim: Served, caller: Caller) -> None:
    body = caller.body(messages=[{"role": "user", "content": "x" * 2_000_000}])
    status, payload, headers = await _post(caller.url(gw.url), caller.headers(), orjson.dumps(body))
    assert status == 413
    caller.check_shape(status, payload, headers)
    assert await sim_requests(sim) == []


@pytest.mark.parametrize("key", [None, "wrong-key-123456"], ids=["missing", "wrong"])
async def test_no_or_wrong_key(gw: Served, sim: Served, caller: Caller, key: str | None) -> None:
    status, payload, headers = await _post(caller.url(gw.url), caller.headers(key), orjson.dumps(caller.body()))
    assert status == 401
    caller.check_shape(status, payload, headers)
    assert "wrong-key" not in orjson.dumps(payload).decode()
    assert await sim_requests(sim) == []


async def test_model_not_allowed_for_team(gw: Served, caller: Caller) -> None:
    url = caller.url(gw.url, model="m-azure")
    status, payload, headers = await _post(
        url, caller.headers(OTHER_TEAM_KEY, model="m-azure"), orjson.dumps(caller.body("m-azure"))
    )
    assert status == 403
    assert "team-b" in caller.check_shape(status, payload, headers)


async def test_unknown_model(gw: Served, caller: Caller) -> None:
    url = caller.url(gw.url, model="no-such-model")
    status, payload, headers = await _post(
        url, caller.headers(model="no-such-model"), orjson.dumps(caller.body("no-such-model"))
    )
    assert status == 404
    assert "no-such-model" in caller.check_shape(status, payload, headers)


async def test_unknown_route_answers_in_openai_shape(gw: Served) -> None:
    status, payload, headers = await _post(f"{gw.url}/v2/chat/completions", {}, b"{}")
    assert status == 404
    Caller("openai").check_shape(status, payload, headers)


async def test_wrong_method(gw: Served, caller: Caller) -> None:
    async with aiohttp.ClientSession() as session, session.get(caller.url(gw.url), headers=caller.headers()) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        caller.check_shape(resp.status, await resp.json(), resp.headers)


@pytest.mark.parametrize("name", ["azure", "foundry"])
@pytest.mark.parametrize("version", [None, "yesterday"], ids=["missing", "malformed"])
async def test_api_version_missing_or_malformed(gw: Served, name: str, version: str | None) -> None:
    caller = Caller(name)
    status, payload, headers = await _post(
        caller.url(gw.url, api_version=version), caller.headers(), orjson.dumps(caller.body())
    )
    assert status == 400
    assert "api-version" in caller.check_shape(status, payload, headers)


async def test_checks_run_in_the_documented_order(gw: Served) -> None:
    """Route, then key, then api-version, then body, then model."""
    azure = Caller("azure")
    # Bad key and bad api-version and bad body: the key wins.
    status, _, _ = await _post(azure.url(gw.url, api_version=None), azure.headers("nope"), b"{")
    assert status == 401
    # Good key, bad api-version, bad body: api-version wins.
    status, payload, _ = await _post(azure.url(gw.url, api_version=None), azure.headers(), b"{")
    assert status == 400 and "api-version" in payload["error"]["message"]
    # Bad body and unknown model: the body wins.
    status, payload, _ = await _post(azure.url(gw.url, model="nope"), azure.headers(), b"{")
    assert status == 400 and "JSON" in payload["error"]["message"]
