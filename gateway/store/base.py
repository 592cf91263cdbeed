"""The store interface: quota admission for the rate limiter, and expiring values for routing.

Two implementations share it: ``memory://`` (one process) and Redis (any number of replicas).
Both run the same algorithm (see ``plugins/ratelimit/window.lua``). Every failure leaves a store
as one ``StoreError``, counted in ``errors`` and passed to the error listeners (metrics).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.config import Limits
from gateway.errors import StoreError

#: The rolling window of ``rpm`` and ``tpm``. Tests pass a shorter one.
MINUTE_MS = 60_000

#: The limit names, as in gateway.yaml, metrics labels and error messages.
RPM, TPM, PER_DAY, PER_MONTH = "rpm", "tpm", "tokens_per_day", "tokens_per_month"


# The per-admission records below are built on every request: plain slotted dataclasses, since a
# frozen one's __init__ (object.__setattr__ per field) costs three times as much. Nothing mutates them.


@dataclass(slots=True)
class Reservation:
    """What one admission charged, so completion can replace it with the actual usage."""

    member: str
    #: Store time of the admission: it picks the day and month the tokens were charged to.
    at_ms: int
    tokens: int


@dataclass(slots=True)
class Counter:
    """One limit of a scope, as the store saw it at the decision."""

    name: str
    limit: int
    used: int
    #: Milliseconds until capacity frees: the oldest admission leaves the window, or the
    #: calendar bucket ends.
    reset_ms: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


@dataclass(slots=True)
class Decision:
    admitted: bool
    now_ms: int
    #: The enforced limits (those set in ``Limits``), after this admission if it was admitted.
    counters: tuple[Counter, ...]
    reservation: Reservation | None = None
    #: The limit that refused; when several did, the one that frees last.
    refused_by: str | None = None
    #: When a retry fits: capacity has freed by then unless others take it first.
    #: ``None`` when the request is larger than the limit itself and can never fit.
    retry_after_ms: int | None = 0


class Store(ABC):
    def __init__(self) -> None:
        #: Failed calls since start (``gateway_store_errors_total``).
        self.errors = 0
        self._error_listeners: list[Callable[[StoreError], None]] = []

    def add_error_listener(self, listener: Callable[[StoreError], None]) -> None:
        """Called with every failure, e.g. by metrics; must not raise."""
        self._error_listeners.append(listener)

    def _failed(self, error: StoreError) -> StoreError:
        self.errors += 1
        for listener in self._error_listeners:
            listener(error)
        return error

    @abstractmethod
    async def admit(
        self,
        scope: str,
        limits: Limits,
        tokens: int,
        *,
        window_ms: int = MINUTE_MS,
        now_ms: int | None = None,
    ) -> Decision:
        """Atomically check every limit of ``scope`` and, if all pass, charge one request and
        ``tokens``. ``now_ms`` overrides the store's clock (tests only)."""

    @abstractmethod
    async def reconcile(self, scope: str, reservation: Reservation, actual_tokens: int) -> None:
        """Replace a reservation's tokens with the actual usage (0 releases it; the request
        itself still counts toward ``rpm``). A store may defer it, but every later admission or
        read of ``scope`` through this store sees it; ``settle`` waits for all of them."""

    async def settle(self) -> None:
        """Wait until every reconciliation made so far has reached the store (shutdown, tests)."""

    @abstractmethod
    async def read_usage(
        self, scope: str, limits: Limits, *, window_ms: int = MINUTE_MS, now_ms: int | None = None
    ) -> tuple[Counter, ...]:
        """The counters of ``scope`` now, charging nothing."""

    @abstractmethod
    async def get(self, key: str) -> str | None:
        """A value set by ``set`` that has not expired yet."""

    @abstractmethod
    async def set(self, key: str, value: str, ttl_ms: int) -> None:
        """Store ``value`` under ``key`` for ``ttl_ms`` milliseconds."""

    @abstractmethod
    async def claim(self, key: str, ttl_ms: int) -> bool:
        """Set ``key`` for ``ttl_ms`` only if it is not set; True for the one caller that set it."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key`` if it exists."""

    @abstractmethod
    async def remaining_ms(self, keys: Sequence[str]) -> list[int]:
        """Milliseconds each key has left to live; 0 for a key that is not set.

        Callers on Redis Cluster must give keys that share one hash tag (one slot)."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the store answers (``/readyz``); never raises."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections."""


def counters(
    limits: Limits,
    *,
    requests: int,
    tokens: int,
    window_reset_ms: int,
    day_tokens: int,
    day_reset_ms: int,
    month_tokens: int,
    month_reset_ms: int,
) -> tuple[Counter, ...]:
    """The ``Counter`` of each limit that ``limits`` enforces (0 and ``None`` enforce nothing)."""
    result: list[Counter] = []
    if limits.rpm:
        result.append(Counter(RPM, limits.rpm, requests, window_reset_ms))
    if limits.tpm:
        result.append(Counter(TPM, limits.tpm, tokens, window_reset_ms))
    if limits.tokens_per_day:
        result.append(Counter(PER_DAY, limits.tokens_per_day, day_tokens, day_reset_ms))
    if limits.tokens_per_month:
        result.append(Counter(PER_MONTH, limits.tokens_per_month, month_tokens, month_reset_ms))
    return tuple(result)
