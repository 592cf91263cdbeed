"""Typed keys for everything the simulator keeps on its ``web.Application``."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.simulator.behaviour import SimulatorConfig
from gateway.simulator.faults import FaultBook
from gateway.simulator.ratelimit import RollingWindowLimiter
from gateway.simulator.recorder import Recorder

CONFIG = web.AppKey("simulator_config", SimulatorConfig)
RECORDER = web.AppKey("simulator_recorder", Recorder)
FAULTS = web.AppKey("simulator_faults", FaultBook)
LIMITER = web.AppKey("simulator_limiter", RollingWindowLimiter)
# Set when the app shuts down, so hanging and sleeping handlers finish promptly.
STOPPING = web.AppKey("simulator_stopping", asyncio.Event)
