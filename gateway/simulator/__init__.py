"""A built-in upstream that speaks the OpenAI, Azure OpenAI and Azure AI Foundry dialects.

The gateway's tests and its shipped ``gateway.yaml`` use it in place of real deployments:
``build_simulator_app`` gives the aiohttp app, ``run_simulator`` serves it until cancelled.
"""

from gateway.simulator.app import build_simulator_app, run_simulator
from gateway.simulator.behaviour import SimulatorConfig

__all__ = ["SimulatorConfig", "build_simulator_app", "run_simulator"]
