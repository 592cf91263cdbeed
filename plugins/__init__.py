"""The gateway's behaviours, as plugins the pipeline calls in order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.plugin import Plugin
from plugins.access_log import AccessLog
from plugins.metrics import MetricsPlugin
from plugins.ratelimit import RateLimitPlugin
from plugins.routing import Router

if TYPE_CHECKING:
    from gateway.app import Runtime


def default_plugins(config: Config, runtime: Runtime) -> list[Plugin]:
    """Metrics first (it sees every request), then admission and routing; the access log last so it
    sees what every other plugin did."""
    assert runtime.store is not None, "the store opens before the plugins"
    metrics = runtime.metrics
    return [
        MetricsPlugin(metrics),
        RateLimitPlugin(runtime.store, on_usage=metrics.set_quota_usage),
        Router(config, runtime.store, on_cooldown=metrics.set_cooldown),
        AccessLog(),
    ]
