from __future__ import annotations

import uuid

import pytest

from tests.redis_servers import RedisServer


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
def team() -> str:
    """A team name of this test's own, so tests sharing a redis-server stay apart."""
    return f"team-{uuid.uuid4().hex[:12]}"
