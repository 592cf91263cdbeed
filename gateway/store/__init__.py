"""Shared state for every replica: quota counters now, routing cooldowns later.

``open_store(config.store)`` picks the implementation from the URL scheme; the app owns the
store (opened and closed in its ``cleanup_ctx``) and hands it to the plugins that need it.
"""

from __future__ import annotations

from gateway.config import StoreConfig
from gateway.store.base import MINUTE_MS, Counter, Decision, Reservation, Store
from gateway.store.breaker import CircuitBreaker
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore

__all__ = [
    "MINUTE_MS",
    "CircuitBreaker",
    "Counter",
    "Decision",
    "MemoryStore",
    "RedisStore",
    "Reservation",
    "Store",
    "open_store",
]


def open_store(config: StoreConfig) -> Store:
    """A store for ``store.url``. Connections open lazily, so Redis may start after the gateway."""
    if config.scheme == "memory":
        return MemoryStore()
    return RedisStore(config)
