from __future__ import annotations

import pytest

from plugins.ratelimit.headers import duration
from plugins.ratelimit.reservation import tokens_to_reserve
from tests.plugins.ratelimit.helpers import make_config, make_exchange

CONFIG = make_config({"research": {"tpm": 1000}}, default_max_tokens=256)


@pytest.mark.parametrize(
    ("body", "op", "expected"),
    [
        ({}, "chat/completions", 10 + 256),
        ({"max_tokens": 100}, "chat/completions", 110),
        ({"max_completion_tokens": 50, "max_tokens": 100}, "chat/completions", 60),
        ({"max_tokens": 100, "n": 3}, "chat/completions", 310),
        ({"max_tokens": "lots"}, "chat/completions", 10 + 256),
        ({"max_tokens": True}, "completions", 10 + 256),
        ({"max_tokens": 100}, "embeddings", 10),
    ],
)
def test_reservation_is_the_prompt_plus_the_completion_budget(body: dict[str, object], op: str, expected: int) -> None:
    ex = make_exchange(CONFIG, "research", body=body, prompt_estimate=10, op=op)
    assert tokens_to_reserve(ex, CONFIG.ratelimit.default_max_tokens) == expected


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"),
        (12, "12ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (59_999, "59.999s"),
        (60_000, "1m0s"),
        (360_000, "6m0s"),
        (90_500, "1m30.5s"),
        (86_399_900, "23h59m59.9s"),
        (-5, "0ms"),
    ],
)
def test_durations_use_the_openai_format(ms: int, text: str) -> None:
    assert duration(ms) == text
