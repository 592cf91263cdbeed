"""Live reload (SIGHUP): a new config generation replaces the old one without dropping a request.

The file is read and validated again. On success a new ``Generation`` (new plugins, started) is
swapped into the pipeline in one assignment; requests already in flight finish on the generation
they started with, whose plugins close after the last of them (``Pipeline.swap``). On failure every
error is logged and the old generation keeps serving.

Keys, teams, limits, models and deployments all change this way, and so do the per-request server
settings (``PER_REQUEST``). What is bound when the process starts (the
listening address, the worker count, connection timeouts and header limits, the shutdown timeout)
needs a restart: a change to it is logged as ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import structlog

from gateway import config as config_module
from gateway.app import Runtime
from gateway.config import Config, ServerConfig

log = structlog.get_logger("gateway")

#: ``server:`` keys read for each request, which a reload applies.
PER_REQUEST = frozenset({"max_body_bytes", "max_response_bytes", "body_timeout_s", "send_timeout_s"})
#: ``server:`` keys that only a restart applies.
RESTART_ONLY: tuple[str, ...] = tuple(f.name for f in fields(ServerConfig) if f.name not in PER_REQUEST)


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """Where the running config came from, so a reload reads it the same way."""

    path: str
    #: The CLI's ``server:`` overrides (``--workers``), applied again on every load.
    overrides: Mapping[str, Any] | None = None

    def load(self) -> Config:
        return config_module.load(self.path, overrides=self.overrides)

    def validate(self) -> Config | None:
        """The new config, or ``None`` after logging every error (``config_reload_failed``)."""
        try:
            return self.load()
        except config_module.ConfigError as exc:
            log.error("config_reload_failed", config=self.path, errors=exc.errors)
            return None


def ignored_changes(old: ServerConfig, new: ServerConfig) -> dict[str, tuple[Any, Any]]:
    """``server:`` keys whose change a reload cannot apply: name -> (running value, file value)."""
    return {
        name: (getattr(old, name), getattr(new, name))
        for name in RESTART_ONLY
        if getattr(old, name) != getattr(new, name)
    }


async def reload(runtime: Runtime, source: ConfigFile) -> bool:
    """Load, validate and swap in a new generation; ``False`` (old config serving) on any failure."""
    pipeline = runtime.pipeline
    if pipeline is None:
        return False
    new = source.validate()
    if new is None:
        return False
    # Compared with the config the process started with: that is what its sockets and limits hold.
    ignored = ignored_changes(runtime.config.server, new.server)
    if ignored:
        log.warning(
            "config_reload_ignored",
            reason="these server keys need a restart",
            keys={name: {"running": a, "file": b} for name, (a, b) in ignored.items()},
        )
    generation = runtime.generation(new)
    started = []
    try:
        for plugin in generation.plugins:
            await plugin.start()
            started.append(plugin)
    except Exception as exc:
        for plugin in reversed(started):
            try:
                await plugin.close()
            except Exception:
                log.exception("plugin_close_failed", plugin=plugin.name)
        log.error("config_reload_failed", config=source.path, errors=[f"plugin start failed: {exc!r}"])
        return False
    pipeline.swap(generation)
    log.info("config_reloaded", config=source.path, summary=new.summary())
    return True
