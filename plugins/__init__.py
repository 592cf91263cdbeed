"""The gateway's behaviours, as plugins the pipeline calls in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.metrics import worker_exited
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


def worker_exit_hooks(config: Config) -> list[Callable[[int], None]]:
    """Called by the supervisor (``server.workers`` > 1) with the pid of each worker that exits.

    The place for per-process cleanup a plugin owns, such as prometheus-client's
    ``multiprocess.mark_process_dead``.
    """
    # A dead worker's in-flight gauge must stop being summed; the variable names the directory.
    return [worker_exited]
