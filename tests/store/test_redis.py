"""What only the Redis store has: the script cache, URL schemes, the error boundary, the breaker."""

from __future__ import annotations

import asyncio
import re
import subprocess

import redis.asyncio as redis

from gateway.config import Limits, StoreConfig
from gateway.errors import StoreError
from gateway.store import CircuitBreaker, MemoryStore, RedisStore, open_store
from gateway.store.redis import RECONCILE_DELAY_S
from tests.redis_servers import RedisClusterServers, RedisServer, free_port, require


async def test_the_script_is_reloaded_after_script_flush(redis_server: RedisServer, scope: str) -> None:
    store = open_store(StoreConfig(url=redis_server.url))
    try:
        assert (await store.admit(scope, Limits(rpm=5), 1)).admitted
        async with redis.Redis.from_url(redis_server.url) as admin:
            await admin.script_flush()
        assert (await store.admit(scope, Limits(rpm=5), 1)).admitted
        [rpm] = await store.read_usage(scope, Limits(rpm=5))
        assert rpm.used == 2
    finally:
        await store.close()


async def test_cluster_keys_of_a_team_share_one_slot(redis_cluster: RedisClusterServers) -> None:
    store = open_store(StoreConfig(url=redis_cluster.url, timeout_ms=1000))  # first call: discovery and connects
    try:
        for team in ("research", "search", "ads", "a}b{c"):  # any name, even with braces
            assert (await store.admit(team, Limits(rpm=5, tokens_per_day=100, tokens_per_month=100), 1)).admitted
    finally:
        await store.close()


def test_the_url_scheme_picks_the_store() -> None:
    assert isinstance(open_store(StoreConfig(url="memory://")), MemoryStore)
    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1", "redis+cluster://127.0.0.1:1"):
        assert isinstance(open_store(StoreConfig(url=url)), RedisStore)


async def test_failures_become_one_error_and_are_counted() -> None:
    store = open_store(StoreConfig(url=f"redis://127.0.0.1:{free_port()}", timeout_ms=50))
    seen: list[StoreError] = []
    store.add_error_listener(seen.append)
    for _ in range(3):
        try:
            await store.admit("research", Limits(rpm=1), 1)
        except StoreError:
            pass
        else:
            raise AssertionError("a store nobody listens on admitted")
    assert store.errors == len(seen) == 3
    assert not await store.ping()
    await store.close()


def test_breaker_skips_during_back_off_and_lets_one_probe_through() -> None:
    now = [0.0]
    breaker = CircuitBreaker(backoff_ms=100, max_backoff_ms=400, clock=lambda: now[0])
    assert breaker.allow()
    breaker.failed()
    assert not breaker.allow()
    now[0] = 100
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # everyone else still skips while it runs
    breaker.failed()  # back-off doubles
    now[0] = 299
    assert not breaker.allow()
    now[0] = 300
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.allow() and breaker.allow()
    assert not breaker.is_open


def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    now = [0.0]
    breaker = CircuitBreaker(backoff_ms=100, clock=lambda: now[0])
    breaker.failed()
    now[0] = 100
    assert breaker.allow()
    breaker.abandoned()
    assert breaker.allow()


def test_redis_store_accepts_a_breaker() -> None:
    breaker = CircuitBreaker(backoff_ms=10)
    assert isinstance(RedisStore(StoreConfig(url="redis://127.0.0.1:1"), breaker=breaker), RedisStore)


def _script_calls(server: RedisServer) -> int:
    stats = subprocess.run(
        [require("redis-cli"), "-p", str(server.port), "INFO", "commandstats"], capture_output=True, text=True
    ).stdout
    match = re.search(r"cmdstat_evalsha:calls=(\d+)", stats)
    return int(match.group(1)) if match else 0


async def test_a_reconciliation_rides_on_the_teams_next_admission(redis_server: RedisServer, scope: str) -> None:
    """One script call per request, not two: each reconciliation goes with the next admission,
    and another replica sees it applied as soon as that admission has run."""
    limits = Limits(tpm=1_000_000)
    store, replica = (open_store(StoreConfig(url=redis_server.url, timeout_ms=1000)) for _ in range(2))
    try:
        decision = await store.admit(scope, limits, 500)
        before = _script_calls(redis_server)
        for _ in range(20):
            assert decision.reservation is not None
            await store.reconcile(scope, decision.reservation, 100)
            decision = await store.admit(scope, limits, 500)
        assert _script_calls(redis_server) - before == 20  # admissions only
        [tpm] = await replica.read_usage(scope, limits)
        assert tpm.used == 20 * 100 + 500  # every reconciliation applied; the last still reserved
    finally:
        await store.close()
        await replica.close()


async def test_a_reconciliation_no_admission_takes_is_sent_by_itself(redis_server: RedisServer, scope: str) -> None:
    limits = Limits(tpm=1_000_000, tokens_per_day=1_000_000)
    store, replica = (open_store(StoreConfig(url=redis_server.url, timeout_ms=1000)) for _ in range(2))
    try:
        decision = await store.admit(scope, limits, 500)
        assert decision.reservation is not None
        await store.reconcile(scope, decision.reservation, 120)
        await asyncio.sleep(RECONCILE_DELAY_S + 0.2)
        assert {c.name: c.used for c in await replica.read_usage(scope, limits)} == {"tpm": 120, "tokens_per_day": 120}
        second = await store.admit(scope, limits, 500)
        assert second.reservation is not None
        await store.reconcile(scope, second.reservation, 7)
        await store.close()  # a drain sends what is owed
        assert {c.name: c.used for c in await replica.read_usage(scope, limits)} == {"tpm": 127, "tokens_per_day": 127}
    finally:
        await replica.close()
