"""The gateway's behaviours, as plugins the pipeline calls in order."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.plugin import Plugin
from plugins.access_log import AccessLog
from plugins.routing import Router

if TYPE_CHECKING:
    from gateway.app import Runtime


def default_plugins(config: Config, runtime: Runtime) -> list[Plugin]:
    """Admission first, then routing; the access log last so it sees what every other plugin did."""
    return [Router(config), AccessLog()]


def worker_exit_hooks(config: Config) -> list[Callable[[int], None]]:
    """Called by the supervisor (``server.workers`` > 1) with the pid of each worker that exits.

    The place for per-process cleanup a plugin owns, such as prometheus-client's
    ``multiprocess.mark_process_dead``.
    """
    return []
