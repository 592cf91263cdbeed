"""Per-deployment requests-per-minute and tokens-per-minute, counted in a rolling window."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Admission:
    allowed: bool
    remaining_requests: int | None
    remaining_tokens: int | None
    retry_after_ms: int = 0
    exceeded: str = ""  # "requests" or "tokens" when refused

    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.remaining_requests is not None:
            headers["x-ratelimit-remaining-requests"] = str(self.remaining_requests)
        if self.remaining_tokens is not None:
            headers["x-ratelimit-remaining-tokens"] = str(self.remaining_tokens)
        return headers


class RollingWindowLimiter:
    """Counts admitted requests and their tokens per target over the last ``window_s`` seconds."""

    def __init__(
        self,
        rpm: int | None,
        tpm: int | None,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rpm = rpm
        self._tpm = tpm
        self._window_s = window_s
        self._clock = clock
        self._events: dict[str, deque[tuple[float, int]]] = {}

    @property
    def enabled(self) -> bool:
        return self._rpm is not None or self._tpm is not None

    def admit(self, target: str, tokens: int) -> Admission:
        now = self._clock()
        events = self._events.setdefault(target, deque())
        while events and events[0][0] <= now - self._window_s:
            events.popleft()
        used_tokens = sum(cost for _, cost in events)
        if self._rpm is not None and len(events) >= self._rpm:
            expires = events[len(events) - self._rpm][0] + self._window_s
            return self._refused(expires - now, used_tokens, len(events), "requests")
        if self._tpm is not None and used_tokens + tokens > self._tpm:
            return self._refused(self._tokens_free_in(events, tokens, now), used_tokens, len(events), "tokens")
        events.append((now, tokens))
        return self._admitted(len(events), used_tokens + tokens)

    def _tokens_free_in(self, events: deque[tuple[float, int]], tokens: int, now: float) -> float:
        assert self._tpm is not None
        excess = sum(cost for _, cost in events) + tokens - self._tpm
        for stamp, cost in events:
            excess -= cost
            if excess <= 0:
                return stamp + self._window_s - now
        return self._window_s  # the request alone is over the limit

    def _admitted(self, requests: int, tokens: int) -> Admission:
        return Admission(
            allowed=True,
            remaining_requests=None if self._rpm is None else max(self._rpm - requests, 0),
            remaining_tokens=None if self._tpm is None else max(self._tpm - tokens, 0),
        )

    def _refused(self, wait_s: float, used_tokens: int, requests: int, exceeded: str) -> Admission:
        return Admission(
            allowed=False,
            remaining_requests=None if self._rpm is None else max(self._rpm - requests, 0),
            remaining_tokens=None if self._tpm is None else max(self._tpm - used_tokens, 0),
            retry_after_ms=max(math.ceil(wait_s * 1000), 1),
            exceeded=exceeded,
        )
