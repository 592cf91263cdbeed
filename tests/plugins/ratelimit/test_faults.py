"""Redis killed, frozen (SIGSTOP) and restarted under load.

``on_error: open`` never fails a request and ``closed`` answers 503 (never 429); either way an
admission returns within about ``timeout_ms`` thanks to the timeout and the circuit breaker, and
enforcement resumes by itself when Redis is back. The latency bound is generous on purpose:
this is a bound on the failure behaviour, not a benchmark.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from gateway.errors import RateLimited, StoreUnavailable
from gateway.exchange import Usage
from gateway.store import open_store
from plugins.ratelimit import RateLimitPlugin
from tests.plugins.ratelimit.helpers import make_config, make_exchange
from tests.redis_servers import RedisClusterServers, RedisServer

TIMEOUT_MS = 50
P99_BOUND_S = 0.25
MAX_BOUND_S = 1.0
RESUME_WITHIN_S = 4.0
ENFORCED = {"admitted", "limited"}  # the store answered


@dataclass
class Load:
    """Workers admitting and completing requests back to back, recording every outcome."""

    plugin: RateLimitPlugin
    on_error: str
    team: str = "faulty"
    workers: int = 8
    #: (finished at, admission latency, outcome)
    outcomes: list[tuple[float, float, str]] = field(default_factory=list)
    running: bool = True

    async def worker(self) -> None:
        config = make_config({self.team: {"rpm": 50, "tpm": 100_000}}, on_error=self.on_error, timeout_ms=TIMEOUT_MS)
        while self.running:
            ex = make_exchange(config, self.team, prompt_estimate=10, body={"max_tokens": 20})
            started = time.monotonic()
            try:
                await self.plugin.admit(ex)
                outcome = "admitted" if ex.response_headers else "unenforced"
            except RateLimited:
                outcome = "limited"
            except StoreUnavailable:
                outcome = "unavailable"
            except Exception as exc:
                outcome = f"error {type(exc).__name__}: {exc}"
            finished = time.monotonic()
            self.outcomes.append((finished, finished - started, outcome))
            ex.usage = Usage(10, 5)
            await self.plugin.completed(ex)
            await asyncio.sleep(0.005)

    async def resumed_after(self, mark: float) -> float:
        """Seconds from ``mark`` until the store decided an admission again."""
        deadline = mark + RESUME_WITHIN_S + 1
        while time.monotonic() < deadline:
            for finished, _, outcome in self.outcomes:
                if finished > mark and outcome in ENFORCED:
                    return finished - mark
            await asyncio.sleep(0.05)
        raise AssertionError(f"enforcement did not resume within {RESUME_WITHIN_S + 1} s")

    def between(self, start: float, end: float) -> set[str]:
        return {o for t, _, o in self.outcomes if start <= t <= end}


async def faults(server: RedisServer, on_error: str) -> tuple[Load, dict[str, float]]:
    config = make_config({}, store_url=server.url, on_error=on_error, timeout_ms=TIMEOUT_MS)
    store = open_store(config.store)
    load = Load(RateLimitPlugin(store, window_ms=1000), on_error)
    tasks = [asyncio.create_task(load.worker()) for _ in range(load.workers)]
    marks: dict[str, float] = {}
    try:
        await asyncio.sleep(0.5)
        server.freeze()
        marks["frozen"] = time.monotonic()
        await asyncio.sleep(1.5)
        server.thaw()
        marks["thawed"] = time.monotonic()
        marks["resumed after thaw"] = await load.resumed_after(marks["thawed"])
        await asyncio.to_thread(server.kill)
        marks["killed"] = time.monotonic()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)  # the same port
        marks["restarted"] = time.monotonic()
        marks["resumed after restart"] = await load.resumed_after(marks["restarted"])
        await asyncio.sleep(0.3)
    finally:
        load.running = False
        await asyncio.gather(*tasks)
        await store.close()
    return load, marks


def check_latency(load: Load) -> None:
    latencies = sorted(latency for _, latency, _ in load.outcomes)
    p99 = latencies[int(len(latencies) * 0.99)]
    assert p99 < P99_BOUND_S, f"p99 admission latency {p99 * 1000:.0f} ms"
    assert latencies[-1] < MAX_BOUND_S, f"slowest admission {latencies[-1] * 1000:.0f} ms"


@pytest.mark.parametrize("on_error", ["open", "closed"])
async def test_redis_faults_under_load(disposable_redis: RedisServer, on_error: str) -> None:
    load, marks = await faults(disposable_redis, on_error)
    outcomes = {o for _, _, o in load.outcomes}
    errors = {o for o in outcomes if o.startswith("error")}
    assert not errors
    fallback = "unenforced" if on_error == "open" else "unavailable"
    assert outcomes == {"admitted", "limited", fallback}
    # While frozen, and while dead, only the fallback answers (after the calls in flight).
    slack = TIMEOUT_MS / 1000 + 0.05
    assert load.between(marks["frozen"] + slack, marks["thawed"]) == {fallback}
    assert load.between(marks["killed"] + slack, marks["restarted"]) == {fallback}
    assert marks["resumed after thaw"] < RESUME_WITHIN_S
    assert marks["resumed after restart"] < RESUME_WITHIN_S
    check_latency(load)


async def cluster_node_down(cluster: RedisClusterServers, on_error: str) -> tuple[Load, Load, dict[str, float]]:
    """Two teams whose keys live on different nodes, under load, while one team's node is killed
    (for less than the cluster's node timeout, so the cluster itself still reports ok)."""
    teams = [f"team-{i}" for i in range(32)]
    slots = {team: cluster.port_of(f"rl:{{{team}}}:log") for team in teams}
    down_team = teams[0]
    up_team = next(team for team in teams if slots[team] != slots[down_team])
    node = next(n for n in cluster.nodes if n.port == slots[down_team])
    config = make_config({}, store_url=cluster.url, on_error=on_error, timeout_ms=TIMEOUT_MS)
    store = open_store(config.store)
    plugin = RateLimitPlugin(store, window_ms=1000)
    down, up = Load(plugin, on_error, team=down_team, workers=4), Load(plugin, on_error, team=up_team, workers=4)
    tasks = [asyncio.create_task(load.worker()) for load in (down, up) for _ in range(load.workers)]
    marks: dict[str, float] = {}
    try:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(node.kill)
        marks["killed"] = time.monotonic()
        await asyncio.sleep(1.5)
        await asyncio.to_thread(node.start)  # the same port and nodes.conf: it rejoins with its slots
        marks["restarted"] = time.monotonic()
        marks["resumed after restart"] = await down.resumed_after(marks["restarted"])
        await asyncio.sleep(0.3)
    finally:
        for load in (down, up):
            load.running = False
        await asyncio.gather(*tasks)
        await store.close()
    return down, up, marks


@pytest.mark.parametrize("on_error", ["open", "closed"])
async def test_a_dead_cluster_node_costs_only_the_teams_whose_keys_it_holds(
    disposable_cluster: RedisClusterServers, on_error: str
) -> None:
    down, up, marks = await cluster_node_down(disposable_cluster, on_error)
    fallback = "unenforced" if on_error == "open" else "unavailable"
    slack = TIMEOUT_MS / 1000 + 0.05
    assert load_errors(down) == load_errors(up) == set()
    assert down.between(marks["killed"] + slack, marks["restarted"]) == {fallback}
    # The other team's node answered throughout: its quota stayed enforced.
    assert up.between(marks["killed"], marks["restarted"]) <= ENFORCED
    assert marks["resumed after restart"] < RESUME_WITHIN_S
    check_latency(up)


def load_errors(load: Load) -> set[str]:
    return {o for _, _, o in load.outcomes if o.startswith("error")}
