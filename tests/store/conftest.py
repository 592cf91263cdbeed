from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from gateway.config import StoreConfig
from gateway.store import Store, open_store
from tests.redis_servers import RedisClusterServers, RedisServer


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """The same behaviour, run against every implementation."""
    if request.param == "memory":
        url = "memory://"
    elif request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        url = server.url
    else:
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        url = cluster.url
    s = open_store(StoreConfig(url=url, timeout_ms=1000))
    yield s
    await s.close()


@pytest.fixture
def scope() -> str:
    """A team name of this test's own, so tests sharing a redis-server stay apart."""
    return f"team-{uuid.uuid4().hex[:12]}"
