"""The hooks a plugin may implement, in the order the pipeline calls them.

A plugin is a small class; the pipeline calls its hooks for every request in the order
``gateway.yaml`` lists the plugins. A plugin stops a request only by raising a ``GatewayError``.
Resources a plugin owns (connections, background tasks) are opened in ``start`` and released
in ``close``, both run from the app's ``cleanup_ctx``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Deployment
from gateway.exchange import Exchange


@dataclass(slots=True)  # not frozen: built for every attempt, and frozen __init__ costs 3x
class Attempt:
    """What happened when one deployment was tried: what routing learns from."""

    deployment: Deployment
    #: The upstream's status, or 0 when there was no answer (connect error, timeout).
    status: int
    #: The upstream's ``retry-after-ms``/``retry-after``, when it sent one.
    retry_after_ms: int | None = None
    #: ``connect``, ``timeout``, ``status``, ``ok``, or for a body that failed after the headers
    #: ``broken``, ``idle_timeout`` (both with status 0) or ``too_large``.
    reason: str = "ok"
    latency_s: float = 0.0
    #: The upstream's ``x-ratelimit-remaining-tokens`` / ``-requests``: its own headroom.
    remaining_tokens: int | None = None
    remaining_requests: int | None = None


class Plugin:
    """Base class: every hook does nothing until a plugin overrides it."""

    name = "plugin"

    async def start(self) -> None:
        """Open resources. Called once, before the server accepts requests."""

    async def close(self) -> None:
        """Release resources. Called once, after the last request finished."""

    async def readiness(self) -> str | None:
        """``None`` when ready to serve, else why not (``/readyz`` answers 503 with it)."""
        return None

    def started(self, exchange: Exchange) -> None:
        """First thing for every inference request, before any check; must not raise. Synchronous
        and called only on plugins that override it, so it costs nothing to the others."""

    async def admit(self, exchange: Exchange) -> None:
        """After auth, body and model checks, before routing. Raise to refuse (e.g. ``RateLimited``)."""

    async def attempted(self, exchange: Exchange, attempt: Attempt) -> None:
        """After each upstream attempt, successful or not."""

    async def completed(self, exchange: Exchange) -> None:
        """Always called once, in ``finally``, even when the client left: reconcile, count, log."""
