"""The plugin's contract with the pipeline: reserve at admit, reconcile at completed."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest

from gateway.errors import RateLimited, StoreUnavailable
from gateway.exchange import Usage
from gateway.store import Store, open_store
from plugins.ratelimit import RateLimitPlugin
from tests.plugins.ratelimit.helpers import make_config, make_exchange
from tests.redis_servers import free_port

HEADERS = {
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
}


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = open_store(make_config({}, store_url=store_url, timeout_ms=2000).store)
    yield s
    await s.close()


async def test_admission_reserves_and_sets_the_team_headers(store: Store, team: str) -> None:
    config = make_config({team: {"rpm": 10, "tpm": 10_000}}, default_max_tokens=500)
    plugin = RateLimitPlugin(store)
    ex = make_exchange(config, team, prompt_estimate=40, body={"max_tokens": 100})
    await plugin.admit(ex)
    assert ex.reserved_tokens == 140
    assert set(ex.response_headers) == HEADERS
    assert ex.response_headers["x-ratelimit-remaining-requests"] == "9"
    assert ex.response_headers["x-ratelimit-remaining-tokens"] == str(10_000 - 140)
    assert ex.response_headers["x-ratelimit-reset-requests"] in {"59.999s", "1m0s", "59.998s"}

    default = make_exchange(config, team, prompt_estimate=40)
    await plugin.admit(default)
    assert default.reserved_tokens == 540


async def test_refusal_names_the_team_and_the_limit(store: Store, team: str) -> None:
    config = make_config({team: {"rpm": 2, "tpm": 100_000}})
    plugin = RateLimitPlugin(store)
    for _ in range(2):
        await plugin.admit(make_exchange(config, team))
    with pytest.raises(RateLimited) as caught:
        await plugin.admit(make_exchange(config, team))
    error = caught.value
    assert (error.status, error.limit, error.type) == (429, "rpm", "requests")
    assert error.message.startswith(f"Team '{team}' exceeded its rpm limit of 2 requests per minute. Retry after ")
    assert 59_000 < error.retry_after_ms <= 60_000
    assert error.headers["retry-after"] == "60"
    assert error.headers["retry-after-ms"] == str(error.retry_after_ms)
    assert set(error.headers) >= HEADERS
    assert error.headers["x-ratelimit-remaining-requests"] == "0"


async def test_token_refusal_is_typed_tokens(store: Store, team: str) -> None:
    config = make_config({team: {"tpm": 1000}})
    plugin = RateLimitPlugin(store)
    await plugin.admit(make_exchange(config, team, body={"max_tokens": 800}))
    with pytest.raises(RateLimited) as caught:
        await plugin.admit(make_exchange(config, team, body={"max_tokens": 300}))
    assert (caught.value.limit, caught.value.type) == ("tpm", "tokens")
    assert "tpm limit of 1000 tokens per minute" in caught.value.message


async def test_a_request_larger_than_the_limit_says_so(store: Store, team: str) -> None:
    config = make_config({team: {"tokens_per_day": 1000}})
    with pytest.raises(RateLimited) as caught:
        await RateLimitPlugin(store).admit(make_exchange(config, team, body={"max_completion_tokens": 5000}))
    assert caught.value.limit == "tokens_per_day"
    assert "reserves 5000 tokens" in caught.value.message
    assert "Lower max_tokens" in caught.value.message


async def test_completion_replaces_the_reservation_and_releases_unserved_ones(store: Store, team: str) -> None:
    limits = {"rpm": 100, "tpm": 10_000, "tokens_per_day": 100_000}
    config = make_config({team: limits})
    plugin = RateLimitPlugin(store)
    served = make_exchange(config, team, prompt_estimate=100, body={"max_tokens": 900})
    unserved = make_exchange(config, team, prompt_estimate=100, body={"max_tokens": 900})
    await plugin.admit(served)
    await plugin.admit(unserved)
    served.usage = Usage(prompt_tokens=90, completion_tokens=210)
    await plugin.completed(served)
    await plugin.completed(unserved)  # usage None: nothing was served
    await plugin.reconciled()  # on Redis they go with the team's next call, or a moment later
    usage = {c.name: c.used for c in await store.read_usage(team, config.teams[team].limits)}
    assert usage == {"rpm": 2, "tpm": 300, "tokens_per_day": 300}


async def test_teams_without_limits_never_touch_the_store(team: str) -> None:
    # A store nobody listens on, failing closed: any round trip would raise.
    config = make_config({team: None}, store_url=f"redis://127.0.0.1:{free_port()}", on_error="closed")
    store = open_store(config.store)
    plugin = RateLimitPlugin(store)
    ex = make_exchange(config, team)
    await plugin.admit(ex)
    await plugin.completed(ex)
    assert store.errors == 0
    assert ex.response_headers == {}
    await store.close()


async def test_store_errors_fail_open_or_closed(team: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}"
    open_config = make_config({team: {"rpm": 1}}, store_url=dead, on_error="open", timeout_ms=50)
    store = open_store(open_config.store)
    plugin = RateLimitPlugin(store)
    for _ in range(3):  # over the limit, but nobody can count: admitted
        ex = make_exchange(open_config, team)
        await plugin.admit(ex)
        await plugin.completed(ex)
    assert store.errors == 3

    closed_config = make_config({team: {"rpm": 1}}, store_url=dead, on_error="closed", timeout_ms=50)
    with pytest.raises(StoreUnavailable) as caught:
        await plugin.admit(make_exchange(closed_config, team))
    assert caught.value.status == 503
    await store.close()


async def test_retry_after_is_honest_in_real_time(store: Store, team: str) -> None:
    """A retry at the refusal time + Retry-After is admitted; 200 ms earlier it is not."""
    config = make_config({team: {"rpm": 3}})
    plugin = RateLimitPlugin(store, window_ms=2000)
    for _ in range(3):
        await plugin.admit(make_exchange(config, team))
        await asyncio.sleep(0.1)
    with pytest.raises(RateLimited) as caught:
        await plugin.admit(make_exchange(config, team))
    refused_at = time.monotonic()
    wait_s = caught.value.retry_after_ms / 1000
    assert 1.5 < wait_s <= 2.0
    await asyncio.sleep(refused_at + wait_s - 0.2 - time.monotonic())
    with pytest.raises(RateLimited):
        await plugin.admit(make_exchange(config, team))
    await asyncio.sleep(refused_at + wait_s - time.monotonic())
    await plugin.admit(make_exchange(config, team))


async def test_token_retry_after_is_honest_in_real_time(store: Store, team: str) -> None:
    config = make_config({team: {"tpm": 1000}})
    plugin = RateLimitPlugin(store, window_ms=1500)
    await plugin.admit(make_exchange(config, team, body={"max_tokens": 600}))
    await asyncio.sleep(0.3)
    await plugin.admit(make_exchange(config, team, body={"max_tokens": 300}))
    big = {"max_tokens": 500}  # fits once the 600 have left, not before
    with pytest.raises(RateLimited) as caught:
        await plugin.admit(make_exchange(config, team, body=big))
    refused_at = time.monotonic()
    wait_s = caught.value.retry_after_ms / 1000
    await asyncio.sleep(refused_at + wait_s - 0.2 - time.monotonic())
    with pytest.raises(RateLimited):
        await plugin.admit(make_exchange(config, team, body=big))
    await asyncio.sleep(refused_at + wait_s - time.monotonic())
    await plugin.admit(make_exchange(config, team, body=big))


async def test_tokens_admitted_never_exceed_tpm_and_the_counter_ends_exact(store: Store, team: str) -> None:
    """Concurrent requests reserve prompt + max_tokens, then reconcile to what they used."""
    tpm = 5000
    config = make_config({team: {"tpm": tpm}})
    plugin = RateLimitPlugin(store)
    rng = random.Random(7)
    used: list[int] = []

    async def request() -> None:
        ex = make_exchange(config, team, prompt_estimate=50, body={"max_tokens": 250})
        try:
            await plugin.admit(ex)
        except RateLimited:
            return
        try:
            await asyncio.sleep(rng.uniform(0, 0.05))
            usage = Usage(prompt_tokens=rng.randint(30, 50), completion_tokens=rng.randint(0, 250))
            ex.usage = usage
            used.append(usage.total)
        finally:
            await plugin.completed(ex)

    for _ in range(4):  # waves: later ones are admitted into capacity earlier ones gave back
        await asyncio.gather(*(request() for _ in range(40)))
        assert sum(used) <= tpm
    assert store.errors == 0  # every admission was decided by the store, none failed open
    await plugin.reconciled()
    [counter] = await store.read_usage(team, config.teams[team].limits)
    assert counter.used == sum(used)
    assert len(used) > tpm // 300  # reconciliation really gave capacity back
