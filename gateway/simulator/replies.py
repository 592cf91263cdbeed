"""Deterministic replies: word tokens, usage counts and the JSON bodies and SSE frames carrying them."""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.simulator.jsonbody import dumps

DEFAULT_EMBEDDING_DIMENSIONS = 16
MAX_EMBEDDING_DIMENSIONS = 3072
DONE_FRAME = b"data: [DONE]\n\n"
_WORD = re.compile(r"\s*\S+")
_SYSTEM_FINGERPRINT = "fp_simulator"


def split_words(text: str) -> tuple[str, ...]:
    """The reply's tokens: each word with the whitespace before it, so they concatenate back."""
    return tuple(_WORD.findall(text))


def text_tokens(text: str) -> int:
    """The simulator's tokenizer: four characters a token, at least one."""
    return max(len(text) // 4, 1)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return "".join(part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def chat_prompt_tokens(messages: Sequence[Any]) -> int:
    chars = sum(len(_content_text(message.get("content"))) for message in messages if isinstance(message, dict))
    return max(chars // 4, 1)


def completion_prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return text_tokens(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(item, int) for item in prompt):
        return len(prompt)
    if isinstance(prompt, list):
        return max(sum(completion_prompt_tokens(item) for item in prompt), 1)
    return 1


@dataclass(frozen=True)
class ReplyPlan:
    """What the simulated model answers: its tokens, why it stopped and what the prompt cost."""

    pieces: tuple[str, ...]
    finish_reason: str
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def plan_reply(reply: str, prompt_tokens: int, max_tokens: int | None) -> ReplyPlan:
    pieces = split_words(reply)
    if max_tokens is not None and max_tokens < len(pieces):
        return ReplyPlan(pieces[:max_tokens], "length", prompt_tokens)
    return ReplyPlan(pieces, "stop", prompt_tokens)


@dataclass(frozen=True)
class StreamStyle:
    """Dialect-specific details of a stream."""

    prompt_filter: bool = False  # Azure: a leading prompt_filter_results chunk
    content_filter: bool = False  # Azure: content_filter_results on every choice
    usage_null: bool = False  # include_usage asked: every chunk carries "usage": null
    usage_chunk: bool = False  # include_usage asked: a choices:[] usage chunk before [DONE]
    usage_on_final: bool = False  # Foundry: usage on the finish_reason chunk


def _frame(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _prompt_filter_results() -> list[dict[str, Any]]:
    return [{"prompt_index": 0, "content_filter_results": {}}]


# Chat completions ----------------------------------------------------------------------------------


def chat_completion(plan: ReplyPlan, model: str, azure: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": plan.text, "refusal": None},
        "logprobs": None,
        "finish_reason": plan.finish_reason,
    }
    if azure:
        choice["content_filter_results"] = {}
    body: dict[str, Any] = {
        "id": new_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": plan.usage(),
        "system_fingerprint": _SYSTEM_FINGERPRINT,
    }
    if azure:
        body["prompt_filter_results"] = _prompt_filter_results()
    return body


def chat_stream_frames(plan: ReplyPlan, model: str, style: StreamStyle) -> list[bytes]:
    ident, created = new_id("chatcmpl"), int(time.time())
    frames: list[bytes] = []
    if style.prompt_filter:
        first: dict[str, Any] = {
            "id": "",
            "object": "",
            "created": 0,
            "model": "",
            "prompt_filter_results": _prompt_filter_results(),
            "choices": [],
        }
        if style.usage_null:
            first["usage"] = None
        frames.append(_frame(first))

    def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        if style.content_filter:
            choice["content_filter_results"] = {}
        body: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
            "choices": [choice],
        }
        if style.usage_null:
            body["usage"] = None
        return body

    frames.append(_frame(chunk({"role": "assistant", "content": ""}, None)))
    frames.extend(_frame(chunk({"content": piece}, None)) for piece in plan.pieces)
    final = chunk({}, plan.finish_reason)
    if style.usage_on_final:
        final["usage"] = plan.usage()
    frames.append(_frame(final))
    if style.usage_chunk:
        usage_chunk = chunk({}, None)
        usage_chunk["choices"] = []
        usage_chunk["usage"] = plan.usage()
        frames.append(_frame(usage_chunk))
    frames.append(DONE_FRAME)
    return frames


# Legacy text completions ---------------------------------------------------------------------------


def text_completion(plan: ReplyPlan, model: str, azure: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "text": plan.text,
        "index": 0,
        "logprobs": None,
        "finish_reason": plan.finish_reason,
    }
    if azure:
        choice["content_filter_results"] = {}
    body: dict[str, Any] = {
        "id": new_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": plan.usage(),
    }
    if azure:
        body["prompt_filter_results"] = _prompt_filter_results()
    return body


def text_stream_frames(plan: ReplyPlan, model: str, style: StreamStyle) -> list[bytes]:
    ident, created = new_id("cmpl"), int(time.time())

    def chunk(text: str, finish_reason: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        if style.content_filter:
            choice["content_filter_results"] = {}
        body: dict[str, Any] = {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
        }
        if style.usage_null:
            body["usage"] = None
        return body

    frames = [_frame(chunk(piece, None)) for piece in plan.pieces]
    frames.append(_frame(chunk("", plan.finish_reason)))
    if style.usage_chunk:
        usage_chunk = chunk("", None)
        usage_chunk["choices"] = []
        usage_chunk["usage"] = plan.usage()
        frames.append(_frame(usage_chunk))
    frames.append(DONE_FRAME)
    return frames


# Embeddings ----------------------------------------------------------------------------------------


def embedding_inputs(value: Any) -> list[str | list[int]] | None:
    """The inputs of an embeddings request, or None when ``input`` has no valid shape."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [list(value)]
    items: list[str | list[int]] = []
    for item in value:
        if isinstance(item, str):
            items.append(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            items.append(list(item))
        else:
            return None
    return items


def embedding_vector(item: str | list[int], dimensions: int) -> list[float]:
    """A deterministic unit vector derived from the input."""
    seed = hashlib.sha256(repr(item).encode()).digest()
    rng = random.Random(seed)
    raw = [rng.uniform(-1.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    # Round through float32 so float and base64 encodings carry the same numbers.
    return [struct.unpack("<f", struct.pack("<f", x / norm))[0] for x in raw]


def embeddings_response(
    items: Sequence[str | list[int]], model: str, dimensions: int, encoding_format: str
) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        vector = embedding_vector(item, dimensions)
        embedding: list[float] | str = vector
        if encoding_format == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(len(item) if isinstance(item, list) else text_tokens(item) for item in items)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
