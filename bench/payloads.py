"""The static upstream replies and the client request bodies, shared by every target.
"""

from __future__ import annotations

import orjson

MODEL = "gpt-4o"
STREAM_MODEL = "gpt-4o-stream"  # a second model name so the gateway can route streams to the stream path
CLIENT_KEY = "bench-key"
UPSTREAM_KEY = "bench-upstream-key"
JSON_PATH = "/v1/chat/completions"
STREAM_PATH = "/stream/v1/chat/completions"  # on the upstream only: the same route serving SSE

_CREATED = 1731000000
_ID = "chatcmpl-AbCdEfGhIjKlMnOpQrStUvWxYz012"
_FINGERPRINT = "fp_45c6de4934"
_ANSWER = (
    "Rate limits are enforced per team in a rolling sixty second window, so bursts are absorbed "
    "until the window is full and the next request then waits for the oldest one to expire."
)
_PROMPT_TOKENS, _COMPLETION_TOKENS = 41, 37

COMPLETION = orjson.dumps({
    "id": _ID,
    "object": "chat.completion",
    "created": _CREATED,
    "model": "gpt-4o-2024-08-06",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": _ANSWER, "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {
        "prompt_tokens": _PROMPT_TOKENS,
        "completion_tokens": _COMPLETION_TOKENS,
        "total_tokens": _PROMPT_TOKENS + _COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "system_fingerprint": _FINGERPRINT,
})


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": _FINGERPRINT,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": None,
    }
    return b"data: " + orjson.dumps(body) + b"\n\n"


def _stream() -> bytes:
    words = _ANSWER.split(" ")
    pieces = [" ".join(words[i : i + 2]) for i in range(0, len(words), 2)]  # ~18 content chunks
    events = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [_chunk({"content": (" " if i else "") + p}) for i, p in enumerate(pieces)]
    events.append(_chunk({}, finish="stop"))
    usage = {
        "id": _ID, "object": "chat.completion.chunk", "created": _CREATED, "model": "gpt-4o-2024-08-06",
        "system_fingerprint": _FINGERPRINT, "choices": [],
        "usage": {"prompt_tokens": _PROMPT_TOKENS, "completion_tokens": _COMPLETION_TOKENS,
                  "total_tokens": _PROMPT_TOKENS + _COMPLETION_TOKENS},
    }
    events.append(b"data: " + orjson.dumps(usage) + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)


STREAM = _stream()
STREAM_EVENTS = STREAM.count(b"data: ")

_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant for an internal platform team."},
    {"role": "user", "content": "Explain in two sentences how the gateway enforces per-team rate limits."},
]
JSON_BODY = orjson.dumps({"model": MODEL, "messages": _MESSAGES, "max_tokens": 128})
STREAM_BODY = orjson.dumps({"model": STREAM_MODEL, "messages": _MESSAGES, "max_tokens": 128, "stream": True})

