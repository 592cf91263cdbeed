"""Prometheus metrics against real servers: tokens as the upstream reported them, statuses,
latencies, upstream failures, the gauges other plugins feed, and bounded labels."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import aiohttp
import openai
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from gateway import config as config_module
from gateway.app import build_app
from gateway.config import Config
from gateway.errors import RateLimited
from gateway.exchange import Exchange
from gateway.metrics import DURATION_BUCKETS, _Pending
from gateway.plugin import Plugin
from gateway.server import make_runner
from gateway.simulator.behaviour import DEFAULT_REPLY
from gateway.simulator.replies import chat_prompt_tokens, split_words
from plugins import default_plugins
from tests.harness import (
    OTHER_TEAM_KEY,
    TEAM_KEY,
    Served,
    free_port,
    gateway,
    matrix_config,
    samples,
    scrape,
    serve_app,
    sim_fault,
    total,
)

TOKENS = "gateway_tokens_total"
REQUESTS = "gateway_requests_total"
Key = tuple[str, str, str, str]  # team, model, deployment, kind


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def last_usage(sse: bytes) -> dict[str, int]:
    """The usage the client saw in a stream: the last ``usage`` object of any event."""
    found: dict[str, int] | None = None
    for event in sse.split(b"\n\n"):
        if event.startswith(b"data: {"):
            usage = orjson.loads(event[6:]).get("usage")
            if usage:
                found = usage
    assert found is not None, sse
    return found


async def post(gw: Served, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.post(gw.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.read()


async def chat(gw: Served, model: str = "m-openai", key: str = TEAM_KEY) -> tuple[int, bytes]:
    """One non-streamed chat completion: status and body."""
    body = {"model": model, "messages": messages("x")}
    return await post(gw, "/v1/chat/completions", body, {"Authorization": f"Bearer {key}"})


def reported_tokens(text: str) -> dict[Key, float]:
    found = {
        (s["team"], s["model"], s["deployment"], s["kind"]): value
        for s, value in samples(text, TOKENS, source="reported")
    }
    return {key: value for key, value in found.items() if value}


async def test_tokens_are_what_the_upstream_reported(gw: Served) -> None:
    expected: collections.Counter[Key] = collections.Counter()

    def add(team: str, model: str, deployment: str, prompt: int, completion: int) -> None:
        expected[(team, model, deployment, "prompt")] += prompt
        expected[(team, model, deployment, "completion")] += completion

    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=TEAM_KEY, max_retries=0)
    team_b = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=OTHER_TEAM_KEY, max_retries=0)
    azure = openai.AsyncAzureOpenAI(azure_endpoint=gw.url, api_version="2024-10-21", api_key=TEAM_KEY, max_retries=0)
    async with client, team_b, azure:
        # OpenAI SDK, non-streaming, to an openai target.
        reply = await client.chat.completions.create(model="m-openai", messages=messages("a" * 40))
        assert reply.usage is not None
        add("team-a", "m-openai", "dep-openai", reply.usage.prompt_tokens, reply.usage.completion_tokens)
        # OpenAI SDK, streaming with include_usage, to an azure target: the client sees the upstream's chunk.
        stream = await client.chat.completions.create(
            model="m-azure", messages=messages("b" * 80), stream=True, stream_options={"include_usage": True}
        )
        usage = [chunk.usage async for chunk in stream if chunk.usage][-1]
        add("team-a", "m-azure", "dep-azure", usage.prompt_tokens, usage.completion_tokens)
        # OpenAI SDK, non-streaming, to a foundry target.
        reply = await client.chat.completions.create(model="m-foundry", messages=messages("c" * 120))
        assert reply.usage is not None
        add("team-a", "m-foundry", "dep-foundry", reply.usage.prompt_tokens, reply.usage.completion_tokens)
        # Azure OpenAI SDK, non-streaming.
        reply = await azure.chat.completions.create(model="m-azure", messages=messages("d" * 160))
        assert reply.usage is not None
        add("team-a", "m-azure", "dep-azure", reply.usage.prompt_tokens, reply.usage.completion_tokens)
        # Another team, embeddings: prompt tokens only.
        embedded = await team_b.embeddings.create(model="m-openai", input="e" * 200)
        add("team-b", "m-openai", "dep-openai", embedded.usage.prompt_tokens, 0)

    # Raw HTTP, Foundry inbound, streaming to a foundry target: usage rides on the final chunk.
    status, raw = await post(
        gw,
        "/models/chat/completions?api-version=2024-05-01-preview",
        {"model": "m-foundry", "stream": True, "messages": messages("f" * 240)},
        {"api-key": TEAM_KEY},
    )
    assert status == 200
    usage_seen = last_usage(raw)
    add("team-a", "m-foundry", "dep-foundry", usage_seen["prompt_tokens"], usage_seen["completion_tokens"])
    # Raw HTTP, streaming without include_usage: the gateway asks for usage and withholds that
    # chunk, so the client never sees it; the simulator's reply is deterministic, so compute it.
    text = "g" * 280
    status, raw = await post(
        gw,
        "/v1/chat/completions",
        {"model": "m-openai", "stream": True, "messages": messages(text)},
        {"Authorization": f"Bearer {OTHER_TEAM_KEY}"},
    )
    assert status == 200 and b'"usage":{' not in raw
    add("team-b", "m-openai", "dep-openai", chat_prompt_tokens(messages(text)), len(split_words(DEFAULT_REPLY)))
    # An Azure deployment too old for stream_options reports nothing: estimated, counted apart.
    status, raw = await post(
        gw,
        "/v1/chat/completions",
        {"model": "m-azure-old", "stream": True, "messages": messages("h" * 40)},
        {"Authorization": f"Bearer {TEAM_KEY}"},
    )
    assert status == 200

    text = await scrape(gw.url)
    assert len(expected) == 8  # four (team, model, deployment) sets, two kinds each
    assert reported_tokens(text) == {key: value for key, value in expected.items() if value}
    estimated = {s["kind"]: value for s, value in samples(text, TOKENS, source="estimated", deployment="dep-azure-old")}
    assert estimated["completion"] > 0 and estimated["prompt"] > 0
    assert total(text, TOKENS, source="estimated") == sum(estimated.values())
    assert total(text, REQUESTS, status="200") == 8


async def test_an_abandoned_stream_counts_what_streamed_and_499(sim: Served, gw: Served) -> None:
    await sim_fault(sim, match="/v1/chat/completions", kind="pause", pause_s=0.5)
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"{gw.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {TEAM_KEY}"},
            json={"model": "m-openai", "stream": True, "messages": messages("hi")},
        )
        assert resp.status == 200
        while b'"content":"This' not in await resp.content.readuntil(b"\n\n"):
            pass  # the role chunk first, then the first word
        resp.close()  # the client leaves; the rest of the stream would take seconds
        deadline = time.monotonic() + 5
        while total(text := await scrape(gw.url), REQUESTS, status="499") < 1:
            assert time.monotonic() < deadline, text
            await asyncio.sleep(0.05)
    labels = {"team": "team-a", "model": "m-openai", "deployment": "dep-openai", "dialect": "openai"}
    assert total(text, REQUESTS, **labels) == 1
    assert total(text, TOKENS, kind="completion", source="estimated", deployment="dep-openai") >= 1
    assert total(text, TOKENS, source="reported") == 0
    assert total(text, "gateway_time_to_first_byte_seconds_count", deployment="dep-openai") == 1
    assert total(text, "gateway_in_flight_requests") == 0


async def test_labels_never_carry_what_the_client_made_up(gw: Served) -> None:
    bogus = "made-up-model-name-1234"
    await post(
        gw, "/v1/chat/completions", {"model": bogus, "messages": messages("x")}, {"Authorization": f"Bearer {TEAM_KEY}"}
    )
    await post(
        gw, "/v1/chat/completions", {"model": "m-openai", "messages": messages("x")}, {"Authorization": "Bearer nope"}
    )
    await post(
        gw,
        "/v1/chat/completions",
        {"model": "m-azure", "messages": messages("x")},
        {"Authorization": f"Bearer {OTHER_TEAM_KEY}"},
    )
    text = await scrape(gw.url)
    assert bogus not in text and "nope" not in text
    assert total(text, REQUESTS, team="team-a", model="", deployment="", status="404") == 1
    assert total(text, REQUESTS, team="", model="", deployment="", status="401") == 1
    # A model that exists but is not allowed is a configured name: it may be a label.
    assert total(text, REQUESTS, team="team-b", model="m-azure", deployment="", status="403") == 1


async def test_upstream_errors_by_reason(sim: Served) -> None:
    dead = f"""
  - name: dep-dead
    dialect: openai
    url: http://127.0.0.1:{free_port()}/v1
    model: m
    api_key: sim-key"""
    async with gateway(matrix_config(sim.url, extra=dead)) as gw:
        auth = {"Authorization": f"Bearer {TEAM_KEY}"}
        await sim_fault(sim, match="/v1/chat/completions", status=500)
        status, _ = await post(gw, "/v1/chat/completions", {"model": "m-openai", "messages": messages("x")}, auth)
        assert status == 500
        await sim_fault(sim, match="/v1/chat/completions", kind="drop_after_chunks", chunks=2)
        status, _ = await post(
            gw, "/v1/chat/completions", {"model": "m-openai", "stream": True, "messages": messages("x")}, auth
        )
        assert status == 200
        status, _ = await post(gw, "/v1/chat/completions", {"model": "dep-dead", "messages": messages("x")}, auth)
        assert status == 502
        text = await scrape(gw.url)
    errors = {(s["deployment"], s["reason"]): value for s, value in samples(text, "gateway_upstream_errors_total")}
    assert errors == {("dep-openai", "status_500"): 1, ("dep-openai", "broken"): 1, ("dep-dead", "connect"): 1}


class Refuse(Plugin):
    """A stand-in for the rate limiter: refuses every request as over its ``tpm``."""

    name = "refuse"

    async def admit(self, exchange: Exchange) -> None:
        raise RateLimited("Team is over its tpm limit.", limit="tpm", retry_after_ms=1500, type="tokens")


async def test_rate_limited_requests_are_counted_by_team_and_limit(sim: Served) -> None:
    cfg = config_module.parse(matrix_config(sim.url))

    def plugins(config: Config, runtime: Any) -> list[Plugin]:
        return [*default_plugins(config, runtime), Refuse()]

    app = build_app(cfg, plugins)
    async with serve_app(app, make_runner(app, cfg)) as gw:
        for _ in range(3):
            status, _ = await chat(gw)
            assert status == 429
        text = await scrape(gw.url)
    assert samples(text, "gateway_rate_limited_total") == [({"team": "team-a", "limit": "tpm"}, 3.0)]
    assert total(text, REQUESTS, team="team-a", model="m-openai", status="429") == 3


async def test_in_flight_covers_the_whole_request(sim: Served, gw: Served) -> None:
    await sim_fault(sim, match="/v1/chat/completions", kind="pause", pause_s=0.3)
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{gw.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {TEAM_KEY}"},
            json={"model": "m-openai", "stream": True, "messages": messages("hi")},
        ) as resp:
            await resp.content.readuntil(b"\n\n")
            assert total(await scrape(gw.url), "gateway_in_flight_requests") == 1
            await resp.read()
    assert total(await scrape(gw.url), "gateway_in_flight_requests") == 0


async def test_the_api_other_plugins_feed(gw: Served) -> None:
    metrics = gw.runtime.metrics
    metrics.store_error()
    metrics.store_error(ConnectionError("redis went away"))
    metrics.set_cooldown("dep-azure", 30)
    metrics.set_cooldown("dep-openai", 30)
    metrics.set_cooldown("dep-openai", 0)
    metrics.set_quota_usage("team-a", "tokens_per_day", 0.93)
    text = await scrape(gw.url)
    assert total(text, "gateway_store_errors_total") == 2
    assert 29 < total(text, "gateway_deployment_cooldown", deployment="dep-azure") <= 30
    assert total(text, "gateway_deployment_cooldown", deployment="dep-openai") == 0
    assert total(text, "gateway_quota_usage_ratio", team="team-a", limit="tokens_per_day") == 0.93
    # The cooldown is kept as a deadline: it counts down between scrapes without being cleared.
    metrics.set_cooldown("dep-azure", 0.2)
    await asyncio.sleep(0.3)
    assert total(await scrape(gw.url), "gateway_deployment_cooldown", deployment="dep-azure") == 0


async def test_each_app_counts_on_its_own(sim: Served) -> None:
    async with gateway(matrix_config(sim.url)) as one, gateway(matrix_config(sim.url)) as two:
        status, _ = await chat(one)
        assert status == 200
        assert total(await scrape(one.url), REQUESTS) == 1
        assert total(await scrape(two.url), REQUESTS) == 0


async def test_metrics_on_a_port_of_their_own(sim: Served) -> None:
    port = free_port()
    async with gateway(matrix_config(sim.url, extra="") + f"metrics: {{port: {port}}}\n") as gw:
        async with aiohttp.ClientSession() as session, session.get(f"{gw.url}/metrics") as resp:
            assert resp.status == 404
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            assert "gateway_in_flight_requests" in await resp.text()


async def test_scrape_content_type(gw: Served) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{gw.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST


def test_a_flushed_histogram_reads_as_if_each_value_had_been_observed() -> None:
    """Latencies are added up per bucket and handed over in a flush; the exposition must be the
    one prometheus_client's own ``observe`` gives, bucket bounds and sum included."""
    values = [0.0, 0.004, 0.01, 0.0100001, 0.3, 2.5, 599.0, 600.0, 600.5, 1e9]
    exposed = []
    for batched in (False, True):
        registry = CollectorRegistry()
        histogram = Histogram("h", "h", ("m",), buckets=DURATION_BUCKETS, registry=registry)
        child = histogram.labels("x")
        if batched:
            pending = _Pending(child, DURATION_BUCKETS)
            for value in values[:4]:
                pending.observe(value)
            pending.flush()
            for value in values[4:]:
                pending.observe(value)
            pending.flush()
            pending.flush()  # nothing new: adds nothing
        else:
            for value in values:
                child.observe(value)
        exposed.append(generate_latest(registry).decode())
    assert 'h_bucket{le="0.01",m="x"} 3.0' in exposed[0]

    def split(text: str) -> tuple[list[str], float]:
        lines = text.splitlines()
        (total_line,) = [line for line in lines if line.startswith("h_sum")]
        return [line for line in lines if line != total_line], float(total_line.rsplit(" ", 1)[1])

    (lines, total_a), (batched_lines, total_b) = split(exposed[0]), split(exposed[1])
    assert batched_lines == lines
    assert abs(total_b - total_a) <= 1e-12 * total_a  # the same sum, added in another order


async def test_requests_reach_the_counters_without_a_scrape_within_the_flush_interval(sim: Served) -> None:
    """Recorded values reach prometheus_client by themselves (another worker's scrape reads them
    from this worker's files), not only when this process is scraped."""
    async with gateway(matrix_config(sim.url)) as gw:
        status, _ = await chat(gw)
        assert status == 200
        metrics = gw.runtime.metrics
        child = metrics.requests.labels("team-a", "m-openai", "dep-openai", "openai", "200")
        deadline = time.monotonic() + 5
        while child._value.get() != 1 and time.monotonic() < deadline:  # noqa: ASYNC110 (polls another task's work)
            await asyncio.sleep(0.05)
        assert child._value.get() == 1
