from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.harness import Served, gateway, matrix_config, simulator

# redis-server processes (single node and a 3-node cluster) for every test that needs them.
pytest_plugins = ["tests.redis_servers"]


@pytest.fixture(autouse=True)
def _loopback_is_reached_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway honours the egress proxy variables: a proxy set on the machine must not carry the
    tests' traffic to upstreams on loopback (tools such as pip may still use it)."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, ",".join(filter(None, ("localhost,127.0.0.1,::1", os.environ.get(name)))))


@pytest.fixture
async def sim() -> AsyncIterator[Served]:
    async with simulator() as served:
        yield served


@pytest.fixture
async def gw(sim: Served) -> AsyncIterator[Served]:
    async with gateway(matrix_config(sim.url)) as served:
        yield served
