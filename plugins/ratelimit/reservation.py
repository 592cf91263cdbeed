"""How many tokens admission reserves for a request, before anything is known about the answer.

The prompt estimate (set by the pipeline) plus the most the completion may use: the client's
``max_completion_tokens``/``max_tokens`` times ``n`` choices, or the configured default. The
reservation is replaced by the actual usage when the response completes.
"""

from __future__ import annotations

from typing import Any

from gateway.exchange import Exchange


def _count(value: Any) -> int | None:
    # ``type() is int``: not a bool, and one check (validation has already typed the fields).
    return value if type(value) is int and value >= 0 else None


def completion_budget(exchange: Exchange, default_max_tokens: int) -> int:
    if exchange.op == "embeddings":
        return 0
    body = exchange.body or {}
    budget = _count(body.get("max_completion_tokens"))
    if budget is None:
        budget = _count(body.get("max_tokens"))
    if budget is None:
        budget = default_max_tokens
    n = body.get("n")
    return budget * n if type(n) is int and n > 1 else budget


def tokens_to_reserve(exchange: Exchange, default_max_tokens: int) -> int:
    return max(0, exchange.prompt_estimate) + completion_budget(exchange, default_max_tokens)
