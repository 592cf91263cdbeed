"""Per-deployment rpm/tpm: 429s in each dialect's shape, retry-after and remaining headers."""

from __future__ import annotations

from gateway.simulator.ratelimit import RollingWindowLimiter
from tests.simulator.simhelpers import AZURE_AUTH, CHAT, OPENAI_AUTH, MakeSim


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_openai_rpm(make_sim: MakeSim) -> None:
    sim = await make_sim(rpm=2)
    remaining = []
    for _ in range(2):
        response = await sim.post("/v1/chat/completions", json=CHAT, headers=OPENAI_AUTH)
        assert response.status == 200
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["1", "0"]
    response = await sim.post("/v1/chat/completions", json=CHAT, headers=OPENAI_AUTH)
    assert response.status == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert 0 < int(response.headers["retry-after-ms"]) <= 60_000
    error = (await response.json())["error"]
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    # Another model is another deployment, with its own budget.
    other = await sim.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o-mini"}, headers=OPENAI_AUTH)
    assert other.status == 200


async def test_azure_tpm(make_sim: MakeSim) -> None:
    sim = await make_sim(tpm=25)  # each request costs 5 prompt + 5 completion tokens
    path = "/openai/deployments/dep-a/chat/completions"
    params = {"api-version": "2024-10-21"}
    remaining = []
    for _ in range(2):
        response = await sim.post(path, params=params, json=CHAT, headers=AZURE_AUTH)
        assert response.status == 200
        remaining.append(response.headers["x-ratelimit-remaining-tokens"])
        assert "x-ratelimit-remaining-requests" not in response.headers
    assert remaining == ["15", "5"]
    response = await sim.post(path, params=params, json=CHAT, headers=AZURE_AUTH)
    assert response.status == 429
    assert response.headers["retry-after"]
    assert response.headers["retry-after-ms"]
    message = (await response.json())["error"]["message"]
    assert (await response.json())["error"]["code"] == "429"
    assert message.startswith("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version")
    assert f"Please retry after {response.headers['retry-after']} seconds." in message


async def test_foundry_rpm_keys_on_the_model(make_sim: MakeSim) -> None:
    sim = await make_sim(rpm=1)
    params = {"api-version": "2025-04-01"}
    body = {"model": "Phi-4", "messages": CHAT["messages"]}
    assert (await sim.post("/models/chat/completions", params=params, json=body, headers=AZURE_AUTH)).status == 200
    response = await sim.post("/models/chat/completions", params=params, json=body, headers=AZURE_AUTH)
    assert response.status == 429
    assert (await response.json())["error"]["code"] == "429"


async def test_no_limits_no_headers(make_sim: MakeSim) -> None:
    sim = await make_sim()
    response = await sim.post("/v1/chat/completions", json=CHAT, headers=OPENAI_AUTH)
    assert "x-ratelimit-remaining-requests" not in response.headers


def test_window_rolls() -> None:
    clock = FakeClock()
    limiter = RollingWindowLimiter(rpm=2, tpm=None, window_s=60.0, clock=clock)
    assert limiter.admit("d", 1).allowed
    clock.now += 10
    assert limiter.admit("d", 1).allowed
    refused = limiter.admit("d", 1)
    assert not refused.allowed
    assert refused.retry_after_ms == 50_000
    assert refused.exceeded == "requests"
    clock.now += 50
    assert limiter.admit("d", 1).allowed


def test_tokens_retry_after_waits_for_enough_tokens_to_expire() -> None:
    clock = FakeClock()
    limiter = RollingWindowLimiter(rpm=None, tpm=100, window_s=60.0, clock=clock)
    assert limiter.admit("d", 40).allowed
    clock.now += 20
    assert limiter.admit("d", 40).allowed
    refused = limiter.admit("d", 50)  # fits once the first request's 40 tokens expire
    assert not refused.allowed
    assert refused.exceeded == "tokens"
    assert refused.remaining_tokens == 20
    assert refused.retry_after_ms == 40_000
    clock.now += 40
    assert limiter.admit("d", 50).allowed
