"""Fixtures: a simulator served over real HTTP by pytest-aiohttp's test server."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application

from gateway.simulator import SimulatorConfig, build_simulator_app
from tests.simulator.simhelpers import MakeSim


@pytest.fixture
def make_sim(aiohttp_client: Any) -> MakeSim:
    async def make(**settings: Any) -> TestClient[Any, Application]:
        client: TestClient[Any, Application] = await aiohttp_client(build_simulator_app(SimulatorConfig(**settings)))
        return client

    return make


@pytest.fixture
async def sim(make_sim: MakeSim) -> TestClient[Any, Application]:
    return await make_sim()
