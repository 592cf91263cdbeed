"""Recording via /_sim/requests, and the request-id headers on every response."""

from __future__ import annotations

from tests.simulator.simhelpers import CHAT, Sim


async def test_requests_are_recorded_and_cleared(sim: Sim) -> None:
    await sim.post(
        "/openai/deployments/dep-a/chat/completions",
        params={"api-version": "2024-10-21"},
        json=CHAT,
        headers={"api-key": "sim-key", "X-Custom": "1"},
    )
    await sim.post("/v1/chat/completions", data=b"not json", headers={"Authorization": "Bearer nope"})
    await sim.get("/_sim/faults")  # control requests are not recorded
    recorded = await (await sim.get("/_sim/requests")).json()
    assert len(recorded) == 2
    first, second = recorded
    assert first["method"] == "POST"
    assert first["path"] == "/openai/deployments/dep-a/chat/completions"
    assert first["query"] == {"api-version": "2024-10-21"}
    assert first["headers"]["api-key"] == "sim-key"
    assert first["headers"]["x-custom"] == "1"
    assert first["body"] == CHAT
    assert second["body"] is None
    assert second["headers"]["authorization"] == "Bearer nope"
    assert (await sim.delete("/_sim/requests")).status == 204
    assert await (await sim.get("/_sim/requests")).json() == []


async def test_every_response_has_a_request_id(sim: Sim) -> None:
    responses = [
        await sim.get("/v1/models"),
        await sim.post("/chat/completions", json={}),
        await sim.get("/nowhere"),
        await sim.get("/_sim/requests"),
    ]
    ids = {response.headers["x-request-id"] for response in responses}
    assert len(ids) == 4
    assert "apim-request-id" in responses[1].headers
    assert "apim-request-id" not in responses[0].headers
