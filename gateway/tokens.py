"""Token estimates, for reservations before a response and for streams that report no usage.

Four characters per token is the usual rule of thumb for English text with OpenAI's tokenizers;
an estimate is always marked as one and replaced by reported usage whenever there is any.
"""

from __future__ import annotations

import math
from typing import Any

CHARS_PER_TOKEN = 4
#: Role and framing tokens each chat message costs beyond its text.
PER_MESSAGE_OVERHEAD = 4


def estimate_prompt(op: str, body: dict[str, Any]) -> int:
    if op == "chat/completions":
        messages = body.get("messages") or ()
        chars = sum(_chars(m.get("content")) for m in messages if isinstance(m, dict))
        return math.ceil(chars / CHARS_PER_TOKEN) + PER_MESSAGE_OVERHEAD * len(messages)
    if op == "completions":
        return math.ceil(_chars(body.get("prompt")) / CHARS_PER_TOKEN) or 1
    return math.ceil(_chars(body.get("input")) / CHARS_PER_TOKEN) or 1


def _chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        # Multi-part content ({"type":"text","text":…}), token-id prompts, or batched inputs.
        total = 0
        for part in content:
            if isinstance(part, dict):
                total += _chars(part.get("text"))
            elif isinstance(part, str):
                total += len(part)
            elif isinstance(part, int | list):
                total += CHARS_PER_TOKEN * (len(part) if isinstance(part, list) else 1)
        return total
    return 0
