"""The token usage an upstream reported in a JSON answer, read without parsing the whole answer.

An embeddings answer can be 100 MB of floats, and parsing it all (about 1.6 s for 130 MB with
orjson) would stall every other request and stream on the event loop for a number the answer
states at its end. OpenAI, Azure and Foundry put ``usage`` last. So the last ``"usage"`` key is
found from the end, its object is parsed alone, and what follows it must parse as the rest of
one object: that proves it is the top-level key, not one nested deeper. When any step fails, and
for answers of a few KiB (where one parse is cheaper than the search), the whole answer is parsed.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.exchange import Usage

_KEY = b'"usage"'
_SPACE = b" \t\r\n"
#: Below this an answer is parsed whole: at a few KiB one parse costs less than the search.
WHOLE_PARSE_BELOW = 4096
#: A usage object is small; a longer candidate is not one, and the whole answer is parsed instead.
_MAX_OBJECT_BYTES = 4096
_NOT_FOUND = object()


def json_usage(raw: bytes, prompt_estimate: int) -> Usage | None:
    """Reported usage, an estimate when the answer has none, or None for an answer that is not JSON."""
    at = raw.rfind(_KEY)
    if at < 0:
        return Usage(prompt_estimate, 0, estimated=True)
    usage = _top_level_value(raw, at + len(_KEY)) if len(raw) >= WHOLE_PARSE_BELOW else _NOT_FOUND
    if usage is _NOT_FOUND:
        try:
            usage = orjson.loads(raw).get("usage")
        except (orjson.JSONDecodeError, AttributeError):
            return None
    return reported(usage, prompt_estimate)


def reported(usage: Any, prompt_estimate: int) -> Usage:
    """``usage`` as counts, or the estimate when it is absent or not counts at all."""
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0
        if _is_count(prompt) and _is_count(completion):
            return Usage(prompt, completion)
    return Usage(prompt_estimate, 0, estimated=True)


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _top_level_value(raw: bytes, after_key: int) -> Any:
    """The value of the key that ends at ``after_key`` if it belongs to the top-level object."""
    start = _skip_space(raw, after_key)
    if raw[start : start + 1] != b":":
        return _NOT_FOUND  # a string value "usage", not a key
    start = _skip_space(raw, start + 1)
    value, end = _object_or_null(raw, start)
    if value is _NOT_FOUND:
        return _NOT_FOUND
    try:
        orjson.loads(b'{"":0' + raw[end:])  # the rest closes exactly one object: the top level
    except orjson.JSONDecodeError:
        return _NOT_FOUND
    return value


def _object_or_null(raw: bytes, start: int) -> tuple[Any, int]:
    if raw.startswith(b"null", start):
        return None, start + 4
    if raw[start : start + 1] != b"{":
        return _NOT_FOUND, start
    # The object ends at the first closing brace that balances the braces before it (counted in C;
    # a brace inside a string would mislead the count, and then the parse fails).
    close = raw.find(b"}", start)
    limit = start + _MAX_OBJECT_BYTES
    while 0 <= close < limit:
        candidate = raw[start : close + 1]
        if candidate.count(b"{") == candidate.count(b"}"):
            try:
                return orjson.loads(candidate), close + 1
            except orjson.JSONDecodeError:
                return _NOT_FOUND, start
        close = raw.find(b"}", close + 1)
    return _NOT_FOUND, start


def _skip_space(raw: bytes, at: int) -> int:
    while at < len(raw) and raw[at] in _SPACE:
        at += 1
    return at
