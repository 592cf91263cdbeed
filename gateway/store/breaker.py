"""A circuit breaker, so a dead or frozen store costs one timeout, not one per request.

Closed: every call goes through. After a failure it opens: calls fail at once, without touching
the network, until the back-off has passed. Then exactly one call probes (half-open) while the
rest keep failing fast; a success closes the breaker, a failure reopens it with a longer
back-off (doubling up to ``max_backoff_ms``).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def monotonic_ms() -> float:
    return time.monotonic() * 1000


class CircuitBreaker:
    def __init__(
        self,
        *,
        backoff_ms: float = 100,
        max_backoff_ms: float = 2000,
        clock: Callable[[], float] = monotonic_ms,
    ) -> None:
        self._min_backoff = backoff_ms
        self._max_backoff = max_backoff_ms
        self._clock = clock
        self._backoff = backoff_ms
        self._open_until: float | None = None
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def allow(self) -> bool:
        """May a call go to the store now? A ``True`` must be followed by ``succeeded``/``failed``."""
        if self._open_until is None:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        self._open_until = None
        self._probing = False
        self._backoff = self._min_backoff

    def failed(self) -> None:
        if self._open_until is not None and not self._probing:
            return  # a call started before the breaker opened: the back-off already counts it
        if self._probing:
            self._backoff = min(self._backoff * 2, self._max_backoff)
        self._probing = False
        self._open_until = self._clock() + self._backoff

    def abandoned(self) -> None:
        """The call was cancelled by its caller: no verdict on the store, let another probe."""
        self._probing = False
