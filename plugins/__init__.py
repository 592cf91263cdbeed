"""The gateway's behaviours, as plugins the pipeline calls in order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.plugin import Plugin
from plugins.access_log import AccessLog
from plugins.metrics import MetricsPlugin
from plugins.routing import Router

if TYPE_CHECKING:
    from gateway.app import Runtime


def default_plugins(config: Config, runtime: Runtime) -> list[Plugin]:
    """Metrics, admission, then routing; the access log last so it sees what every other plugin did."""
    return [MetricsPlugin(runtime.metrics), Router(config), AccessLog()]
