"""A config and exchanges for driving the rate-limit plugin without an HTTP server."""

from __future__ import annotations

from typing import Any

import yaml

from gateway.config import Config, parse
from gateway.exchange import Exchange


def make_config(
    teams: dict[str, dict[str, int] | None],
    *,
    store_url: str = "memory://",
    on_error: str = "open",
    timeout_ms: int = 100,
    default_max_tokens: int = 1024,
) -> Config:
    """``teams`` maps each team name to its ``limits`` (``None``: no limits)."""
    raw: dict[str, Any] = {
        "store": {"url": store_url, "on_error": on_error, "timeout_ms": timeout_ms},
        "ratelimit": {"default_max_tokens": default_max_tokens},
        "deployments": [
            {"name": "sim", "dialect": "openai", "url": "http://127.0.0.1:9", "model": "m", "api_key": "k"}
        ],
        "models": {"gpt-4o": {"deployments": ["sim"]}},
        "teams": {
            name: {"keys": [f"key-{name}"], **({"limits": limits} if limits else {})} for name, limits in teams.items()
        },
    }
    return parse(yaml.safe_dump(raw))


def make_exchange(
    config: Config,
    team: str,
    *,
    body: dict[str, Any] | None = None,
    prompt_estimate: int = 0,
    op: str = "chat/completions",
) -> Exchange:
    return Exchange(
        request=None,  # type: ignore[arg-type]  # the limiter never reads the HTTP request
        config=config,
        inbound=None,  # type: ignore[arg-type]
        op=op,
        request_id="test",
        team=config.teams[team],
        model="gpt-4o",
        body={"model": "gpt-4o", "messages": [], **(body or {})},
        prompt_estimate=prompt_estimate,
    )
