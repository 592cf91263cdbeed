"""Composes the answer to a validated request: a JSON body or SSE frames, and its token cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.simulator import errors
from gateway.simulator.dialects import Dialect, Operation
from gateway.simulator.inbound import Inbound, embedding_dimensions, max_tokens
from gateway.simulator.replies import (
    DEFAULT_EMBEDDING_DIMENSIONS,
    StreamStyle,
    chat_completion,
    chat_prompt_tokens,
    chat_stream_frames,
    completion_prompt_tokens,
    embedding_inputs,
    embeddings_response,
    plan_reply,
    text_completion,
    text_stream_frames,
)

_ENCODING_FORMATS = ("float", "base64")


@dataclass(frozen=True)
class Answer:
    tokens: int  # what the request costs against tpm
    body: dict[str, Any] | None = None  # non-streaming answer
    frames: list[bytes] | None = None  # streaming answer, ending with [DONE]


def stream_style(inbound: Inbound) -> StreamStyle:
    if inbound.dialect is Dialect.FOUNDRY:
        return StreamStyle(usage_on_final=True)
    usage = inbound.include_usage
    azure = inbound.dialect is Dialect.AZURE
    return StreamStyle(
        prompt_filter=azure and inbound.operation is Operation.CHAT,
        content_filter=azure,
        usage_null=usage,
        usage_chunk=usage,
    )


def compose(inbound: Inbound, reply: str) -> Answer:
    body, azure = inbound.body, inbound.dialect is Dialect.AZURE
    if inbound.operation is Operation.EMBEDDINGS:
        return _embeddings(inbound)
    limit = max_tokens(inbound.dialect, body)
    if inbound.operation is Operation.CHAT:
        plan = plan_reply(reply, chat_prompt_tokens(body["messages"]), limit)
        if inbound.stream:
            frames = chat_stream_frames(plan, inbound.model, stream_style(inbound))
            return Answer(plan.prompt_tokens + plan.completion_tokens, frames=frames)
        return Answer(plan.prompt_tokens + plan.completion_tokens, body=chat_completion(plan, inbound.model, azure))
    plan = plan_reply(reply, completion_prompt_tokens(body["prompt"]), limit)
    if inbound.stream:
        frames = text_stream_frames(plan, inbound.model, stream_style(inbound))
        return Answer(plan.prompt_tokens + plan.completion_tokens, frames=frames)
    return Answer(plan.prompt_tokens + plan.completion_tokens, body=text_completion(plan, inbound.model, azure))


def _embeddings(inbound: Inbound) -> Answer:
    dialect, body = inbound.dialect, inbound.body
    items = embedding_inputs(body.get("input"))
    if items is None:
        raise errors.bad_request(
            dialect, "Invalid 'input': expected a string, a list of strings or token lists.", "input"
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in _ENCODING_FORMATS:
        raise errors.bad_request(
            dialect,
            f"Invalid 'encoding_format': expected one of {list(_ENCODING_FORMATS)}.",
            "encoding_format",
        )
    dimensions = embedding_dimensions(dialect, body) or DEFAULT_EMBEDDING_DIMENSIONS
    response = embeddings_response(items, inbound.model, dimensions, encoding)
    return Answer(response["usage"]["total_tokens"], body=response)
