"""How many tokens admission reserves for a request, before anything is known about the answer.

The prompt estimate (set by the pipeline) plus the most the completion may use: the client's
``max_completion_tokens``/``max_tokens`` times ``n`` choices, or the configured default. The
reservation is replaced by the actual usage when the response completes.
"""

from __future__ import annotations

from typing import Any

from gateway.exchange import Exchange


def _count(body: dict[str, Any], field: str) -> int | None:
    value = body.get(field)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def completion_budget(exchange: Exchange, default_max_tokens: int) -> int:
    if exchange.op == "embeddings":
        return 0
    body = exchange.body or {}
    budget = _count(body, "max_completion_tokens")
    if budget is None:
        budget = _count(body, "max_tokens")
    if budget is None:
        budget = default_max_tokens
    return budget * max(1, _count(body, "n") or 1)


def tokens_to_reserve(exchange: Exchange, default_max_tokens: int) -> int:
    return max(0, exchange.prompt_estimate) + completion_budget(exchange, default_max_tokens)
