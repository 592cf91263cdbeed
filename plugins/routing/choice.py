"""Ordering a pool: lowest priority group first; within a group, by weight or by headroom."""

from __future__ import annotations

import random
from collections.abc import Mapping
from itertools import groupby

from gateway.config import Deployment


def weighted(group: list[Deployment], rng: random.Random) -> list[Deployment]:
    """A weighted random order without replacement (Efraimidis-Spirakis: key = u^(1/w))."""
    if len(group) == 1:
        return group
    draw = rng.random
    return sorted(group, key=lambda d: draw() ** (1.0 / d.weight) if d.weight > 0 else -1.0, reverse=True)


def least_utilized(group: list[Deployment], rng: random.Random, headroom: Mapping[str, float]) -> list[Deployment]:
    """Most reported headroom first; deployments that never reported keep their weighted place."""
    shuffled = weighted(group, rng)
    known = sorted((d for d in shuffled if d.name in headroom), key=lambda d: headroom[d.name], reverse=True)
    unknown = [d for d in shuffled if d.name not in headroom]
    return unknown + known if known and headroom[known[0].name] <= 0 else known + unknown


def by_priority(pool: list[Deployment]) -> list[list[Deployment]]:
    ordered = sorted(pool, key=lambda d: d.priority)
    return [list(group) for _, group in groupby(ordered, key=lambda d: d.priority)]
