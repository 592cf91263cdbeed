"""The checks every request body gets, whatever its dialect: each failure names its field."""

from __future__ import annotations

from typing import Any

from gateway.errors import BadRequest

_INTEGER_FIELDS = ("max_tokens", "max_completion_tokens", "n", "seed", "dimensions", "top_logprobs")
_NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
_REQUIRED = {"chat/completions": "messages", "completions": "prompt", "embeddings": "input"}


def validate_body(op: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    required = _REQUIRED[op]
    if required not in body:
        raise BadRequest(f"Missing required parameter: '{required}'.", param=required)
    if op == "chat/completions":
        _check_messages(body["messages"])
    elif not isinstance(body[required], str | list) or not body[required]:
        raise BadRequest(f"'{required}' must be a non-empty string or array.", param=required)
    if "model" in body and not isinstance(body["model"], str):
        raise BadRequest(f"'model' must be a string, got {_kind(body['model'])}.", param="model")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise BadRequest(f"'stream' must be a boolean, got {_kind(body['stream'])}.", param="stream")
    if "stream_options" in body and not isinstance(body["stream_options"], dict | None):
        raise BadRequest("'stream_options' must be an object.", param="stream_options")
    for name in _INTEGER_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise BadRequest(f"'{name}' must be an integer, got {_kind(value)}.", param=name)
        if name in ("max_tokens", "max_completion_tokens", "n") and isinstance(value, int) and value < 1:
            raise BadRequest(f"'{name}' must be at least 1, got {value}.", param=name)
    for name in _NUMBER_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise BadRequest(f"'{name}' must be a number, got {_kind(value)}.", param=name)
    return body


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array of message objects.", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"'messages[{i}]' must be an object, got {_kind(message)}.", param=f"messages[{i}]")
        if not isinstance(message.get("role"), str):
            raise BadRequest(f"'messages[{i}].role' is required and must be a string.", param=f"messages[{i}].role")


def _kind(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)
