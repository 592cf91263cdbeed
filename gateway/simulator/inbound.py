"""Reads a request the way each real service does: credentials, api-version, body and parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.simulator import errors
from gateway.simulator.dialects import Dialect, Operation
from gateway.simulator.jsonbody import parse
from gateway.simulator.replies import MAX_EMBEDDING_DIMENSIONS

DEFAULT_MODEL = "sim-model"
FOUNDRY_API_VERSIONS = frozenset({"2024-05-01-preview", "2025-04-01"})
_AZURE_API_VERSION = re.compile(r"(\d{4}-\d{2}-\d{2})(-preview)?")
# The first Azure OpenAI version that knows these chat parameters (D4 in dialects.md).
_AZURE_NEW_PARAMETERS_SINCE = "2024-09-01"
_AZURE_NEW_PARAMETERS = ("stream_options", "max_completion_tokens", "parallel_tool_calls")
_MISSING_API_VERSION = "Missing required query parameter: api-version"

# The service's own list, kept apart from the gateway's (plugins/dialects/params.py) on purpose:
# a parameter the gateway wrongly lets through must meet the simulator's 400, as the real one's.
FOUNDRY_CHAT_PARAMETERS = frozenset(
    {
        "messages",
        "model",
        "frequency_penalty",
        "presence_penalty",
        "temperature",
        "top_p",
        "max_tokens",
        "response_format",
        "stop",
        "stream",
        "tools",
        "tool_choice",
        "seed",
        "modalities",
    }
)
FOUNDRY_EMBEDDINGS_PARAMETERS = frozenset({"input", "model", "dimensions", "encoding_format", "input_type"})
_EXTRA_PARAMETER_MODES = ("error", "drop", "pass-through")
_EXTRA_PARAMETER_ALIASES = {"allow": "pass-through"}


@dataclass(frozen=True)
class Inbound:
    """One validated API request."""

    dialect: Dialect
    operation: Operation
    target: str  # the deployment or model the request is for: rate limits and faults key on it
    model: str  # what responses report as their model
    api_version: str | None
    body: dict[str, Any]
    stream: bool
    include_usage: bool


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def check_key(request: web.Request, dialect: Dialect, keys: frozenset[str]) -> None:
    """OpenAI takes a Bearer key; Azure and Foundry take ``api-key`` (decisive when sent) or Bearer."""
    if dialect is Dialect.OPENAI:
        key = _bearer(request)
    else:
        key = request.headers.get("api-key") or _bearer(request)
    if key is None or key not in keys:
        raise errors.unauthorized(dialect)


def api_version(request: web.Request, dialect: Dialect) -> str | None:
    if dialect is Dialect.OPENAI:
        return None
    version = request.query.get("api-version")
    if not version:
        raise errors.azure_bad_request(dialect, _MISSING_API_VERSION)
    supported = (
        version in FOUNDRY_API_VERSIONS
        if dialect is Dialect.FOUNDRY
        else _AZURE_API_VERSION.fullmatch(version) is not None
    )
    if not supported:
        raise errors.azure_bad_request(
            dialect, f"Unsupported api-version '{version}'. Use a dated version such as 2024-10-21."
        )
    return version


def _json_object(raw: bytes, dialect: Dialect) -> dict[str, Any]:
    try:
        body = parse(raw)
    except ValueError:
        raise errors.bad_request(
            dialect, "We could not parse the JSON body of your request. Send valid JSON."
        ) from None
    if not isinstance(body, dict):
        raise errors.bad_request(dialect, "The request body must be a JSON object.")
    return body


def _extra_parameter_mode(request: web.Request) -> str:
    header = request.headers.get("extra-parameters")
    if header is None:
        legacy = request.headers.get("unknown_params", "").strip().lower()
        return "pass-through" if legacy == "pass_through" else "error"
    mode = header.strip().lower()
    mode = _EXTRA_PARAMETER_ALIASES.get(mode, mode)
    if mode not in _EXTRA_PARAMETER_MODES:
        raise errors.SimulatedError(
            400,
            {
                "detail": f"Unexpected EXTRA_PARAMETERS option {header.strip()}, "
                f"expected options are {list(_EXTRA_PARAMETER_MODES)!r}"
            },
        )
    return mode


def apply_extra_parameters(request: web.Request, operation: Operation, body: dict[str, Any]) -> dict[str, Any]:
    """Foundry's ``extra-parameters`` policy: refuse, drop or keep keys the API does not define."""
    mode = _extra_parameter_mode(request)
    defined = FOUNDRY_CHAT_PARAMETERS if operation is Operation.CHAT else FOUNDRY_EMBEDDINGS_PARAMETERS
    extra = [name for name in body if name not in defined]
    if not extra or mode == "pass-through":
        return body
    if mode == "drop":
        return {name: value for name, value in body.items() if name in defined}
    raise errors.SimulatedError(
        400,
        {
            "detail": f"Extra parameters {extra!r} are not allowed when extra-parameters is not set or "
            "set to be 'error'. Set extra-parameters to 'pass-through' to pass to the model."
        },
    )


def _check_azure_parameters(version: str, body: dict[str, Any]) -> None:
    match = _AZURE_API_VERSION.fullmatch(version)
    assert match is not None
    if match.group(1) >= _AZURE_NEW_PARAMETERS_SINCE:
        return
    for name in body:
        if name in _AZURE_NEW_PARAMETERS:
            raise errors.SimulatedError(
                400,
                errors.openai_error(f"Unrecognized request argument supplied: {name}", "invalid_request_error", ""),
            )


def _optional_positive_int(dialect: Dialect, body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.bad_request(dialect, f"Invalid '{name}': expected an integer of at least 1.", name)
    return value


def max_tokens(dialect: Dialect, body: dict[str, Any]) -> int | None:
    limits = [
        limit
        for limit in (
            _optional_positive_int(dialect, body, "max_tokens"),
            _optional_positive_int(dialect, body, "max_completion_tokens"),
        )
        if limit is not None
    ]
    return min(limits) if limits else None


def embedding_dimensions(dialect: Dialect, body: dict[str, Any]) -> int | None:
    dimensions = _optional_positive_int(dialect, body, "dimensions")
    if dimensions is not None and dimensions > MAX_EMBEDDING_DIMENSIONS:
        raise errors.bad_request(dialect, f"Invalid 'dimensions': at most {MAX_EMBEDDING_DIMENSIONS}.", "dimensions")
    return dimensions


def _check_operation_fields(dialect: Dialect, operation: Operation, body: dict[str, Any]) -> None:
    if operation is Operation.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise errors.bad_request(dialect, "Missing required parameter: 'messages'.", "messages")
    elif operation is Operation.COMPLETIONS:
        if "prompt" not in body:
            raise errors.bad_request(dialect, "Missing required parameter: 'prompt'.", "prompt")
    elif "input" not in body:
        raise errors.bad_request(dialect, "Missing required parameter: 'input'.", "input")


def _stream_flags(dialect: Dialect, body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise errors.bad_request(dialect, "Invalid 'stream': expected a boolean.", "stream")
    options = body.get("stream_options")
    if dialect is Dialect.FOUNDRY or options is None:
        return bool(stream), False  # Foundry has no stream_options: pass-through only reaches the model
    if not stream:
        raise errors.bad_request(
            dialect,
            "The 'stream_options' parameter is only allowed when 'stream' is set to true.",
            "stream_options",
        )
    if not isinstance(options, dict):
        raise errors.bad_request(dialect, "Invalid 'stream_options': expected an object.", "stream_options")
    return True, options.get("include_usage") is True


async def read(request: web.Request, dialect: Dialect, operation: Operation, keys: frozenset[str]) -> Inbound:
    """Validate an API request in ``dialect``; raises ``SimulatedError`` with the service's answer."""
    check_key(request, dialect, keys)
    version = api_version(request, dialect)
    body = _json_object(await request.read(), dialect)
    if dialect is Dialect.FOUNDRY:
        body = apply_extra_parameters(request, operation, body)
    elif dialect is Dialect.AZURE and version is not None:
        _check_azure_parameters(version, body)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise errors.bad_request(dialect, "Invalid 'model': expected a string.", "model")
    if dialect is Dialect.OPENAI:
        if not model:
            raise errors.bad_request(dialect, "you must provide a model parameter")
        target = model
    elif dialect is Dialect.AZURE:
        target = request.match_info["deployment"]
        model = target
    else:
        deployment = request.headers.get("azureml-model-deployment")
        model = model or deployment or DEFAULT_MODEL
        target = deployment or model
    _check_operation_fields(dialect, operation, body)
    stream, include_usage = _stream_flags(dialect, body)
    if operation is Operation.EMBEDDINGS and stream:
        raise errors.bad_request(dialect, "Embeddings cannot be streamed.", "stream")
    return Inbound(dialect, operation, target, model, version, body, stream, include_usage)
