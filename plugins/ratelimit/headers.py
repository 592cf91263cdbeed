"""The team's ``x-ratelimit-*`` headers, in OpenAI's names and duration format."""

from __future__ import annotations

from gateway.store import Counter
from gateway.store.base import RPM


def duration(ms: int) -> str:
    """OpenAI's (Go's) duration format: ``12ms``, ``1s``, ``1.5s``, ``6m0s``, ``23h59m59.9s``."""
    if ms < 1000:
        return f"{max(0, ms)}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest // 1000}" if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"


def rate_limit_headers(counters: tuple[Counter, ...]) -> dict[str, str]:
    """Requests headers from ``rpm``; tokens headers from the token limit closest to running out."""
    headers: dict[str, str] = {}
    tokens: Counter | None = None
    least = 0
    for counter in counters:
        remaining = counter.remaining
        if counter.name == RPM:
            headers["x-ratelimit-limit-requests"] = str(counter.limit)
            headers["x-ratelimit-remaining-requests"] = str(remaining)
            headers["x-ratelimit-reset-requests"] = duration(counter.reset_ms)
        elif tokens is None or remaining < least:
            tokens, least = counter, remaining
    if tokens is not None:
        headers["x-ratelimit-limit-tokens"] = str(tokens.limit)
        headers["x-ratelimit-remaining-tokens"] = str(least)
        headers["x-ratelimit-reset-tokens"] = duration(tokens.reset_ms)
    return headers
