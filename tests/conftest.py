from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.harness import Served, gateway, matrix_config, simulator

# redis-server processes (single node and a 3-node cluster) for every test that needs them.
pytest_plugins = ["tests.redis_servers"]


@pytest.fixture
async def sim() -> AsyncIterator[Served]:
    async with simulator() as served:
        yield served


@pytest.fixture
async def gw(sim: Served) -> AsyncIterator[Served]:
    async with gateway(matrix_config(sim.url)) as served:
        yield served
