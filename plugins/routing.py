"""Choosing deployments for a request: lowest priority group first, by weight within a group."""

from __future__ import annotations

import random
from itertools import groupby

from gateway.config import Config, Deployment
from gateway.exchange import Exchange
from gateway.plugin import Plugin

#: Attempts a single request may make across a pool, however large the pool.
MAX_ATTEMPTS = 3


class Router(Plugin):
    name = "routing"

    def __init__(self, config: Config, rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng or random.Random()

    def plan(self, exchange: Exchange) -> list[Deployment]:
        """The deployments to try, in order; a pinned request gets exactly its deployment."""
        if exchange.pinned is not None:
            return [exchange.pinned]
        assert exchange.model is not None
        pool = sorted(self._config.pool(exchange.model), key=lambda d: d.priority)
        ordered: list[Deployment] = []
        for _, group in groupby(pool, key=lambda d: d.priority):
            ordered.extend(self._weighted_order(list(group)))
        return ordered[:MAX_ATTEMPTS]

    def _weighted_order(self, group: list[Deployment]) -> list[Deployment]:
        if len(group) == 1:
            return group
        # Weighted random order without replacement (Efraimidis-Spirakis): key = u^(1/w).
        rng = self._rng.random
        return sorted(group, key=lambda d: rng() ** (1.0 / d.weight) if d.weight > 0 else -1.0, reverse=True)
