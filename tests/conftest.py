from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.harness import Served, gateway, matrix_config, simulator


@pytest.fixture
async def sim() -> AsyncIterator[Served]:
    async with simulator() as served:
        yield served


@pytest.fixture
async def gw(sim: Served) -> AsyncIterator[Served]:
    async with gateway(matrix_config(sim.url)) as served:
        yield served
