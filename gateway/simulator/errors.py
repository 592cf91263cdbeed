"""Error bodies and headers in each dialect's shape, raised as ``SimulatedError``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.simulator.dialects import Dialect, Operation
from gateway.simulator.jsonbody import json_response

_OPENAI_401 = "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
_AZURE_401 = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
    "key for an active subscription and use a correct regional API endpoint for your resource."
)
_AZURE_CODES = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    408: "Timeout",
    409: "Conflict",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_OPENAI_MESSAGES = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
    504: "Gateway timeout.",
}


class SimulatedError(Exception):
    """An error answer, already in the dialect's shape; handlers turn it into a response."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return json_response(self.body, status=self.status, headers=self.headers)


def openai_error(message: str, type_: str, param: str | None = None, code: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def azure_error(code: str, message: str) -> Any:
    return {"error": {"code": code, "message": message}}


def _azure_headers(dialect: Dialect, code: str) -> dict[str, str]:
    # Foundry's spec (Azure.Core) mirrors error.code into x-ms-error-code.
    return {"x-ms-error-code": code} if dialect is Dialect.FOUNDRY else {}


def unauthorized(dialect: Dialect) -> SimulatedError:
    if dialect is Dialect.OPENAI:
        return SimulatedError(401, openai_error(_OPENAI_401, "invalid_request_error", None, "invalid_api_key"))
    return SimulatedError(401, azure_error("401", _AZURE_401), _azure_headers(dialect, "401"))


def bad_request(dialect: Dialect, message: str, param: str | None = None) -> SimulatedError:
    """A malformed or incomplete body (missing field, wrong type, unparsable JSON)."""
    if dialect is not Dialect.FOUNDRY:
        # Azure OpenAI passes body validation errors through in OpenAI's shape.
        return SimulatedError(400, openai_error(message, "invalid_request_error", param))
    # Foundry's model servers validate bodies like FastAPI: 422 with a list of details.
    location = ["body", param] if param else ["body"]
    detail = [{"type": "value_error", "loc": location, "msg": message, "input": None}]
    return SimulatedError(422, {"detail": detail})


def azure_bad_request(dialect: Dialect, message: str) -> SimulatedError:
    """Azure.Core-style 400 (query-parameter problems on Azure and Foundry)."""
    return SimulatedError(400, azure_error("BadRequest", message), _azure_headers(dialect, "BadRequest"))


def not_found(dialect: Dialect, message: str) -> SimulatedError:
    if dialect is Dialect.OPENAI:
        return SimulatedError(404, openai_error(message, "invalid_request_error", None, "unknown_url"))
    return SimulatedError(404, azure_error("404", message), _azure_headers(dialect, "404"))


def retry_headers(retry_after_ms: int) -> dict[str, str]:
    return {
        "retry-after": str(math.ceil(retry_after_ms / 1000)),
        "retry-after-ms": str(retry_after_ms),
    }


def status_error(
    dialect: Dialect,
    status: int,
    operation: Operation | None,
    api_version: str | None,
    *,
    retry_after_ms: int | None,
    exceeded: str = "requests",
) -> SimulatedError:
    """The dialect's usual answer for ``status`` (used by rate limits and injected faults).

    ``exceeded`` names the limit a 429 is about: ``requests`` or ``tokens``.
    """
    headers = retry_headers(retry_after_ms) if retry_after_ms is not None else {}
    if status == 401:
        error = unauthorized(dialect)
        error.headers.update(headers)
        return error
    if dialect is Dialect.OPENAI:
        body = _openai_status_body(status, retry_after_ms, exceeded)
        return SimulatedError(status, body, headers)
    if status == 429:
        seconds = math.ceil((retry_after_ms or 1000) / 1000)
        op_id = operation.azure_operation_id if operation else "ChatCompletions_Create"
        product = "Azure OpenAI" if dialect is Dialect.AZURE else "Azure AI Model Inference"
        message = (
            f"Requests to the {op_id} Operation under {product} API version {api_version or 'unknown'} "
            f"have exceeded call rate limit of your current pricing tier. "
            f"Please retry after {seconds} seconds."
        )
        code = "429"
    else:
        code = _AZURE_CODES.get(status, str(status))
        message = f"The simulated upstream answered {status}."
    headers.update(_azure_headers(dialect, code))
    return SimulatedError(status, azure_error(code, message), headers)


def _openai_status_body(status: int, retry_after_ms: int | None, exceeded: str) -> Any:
    if status == 429:
        seconds = math.ceil((retry_after_ms or 1000) / 1000)
        message = f"Rate limit reached for {exceeded}. Please try again in {seconds}s."
        return openai_error(message, exceeded, None, "rate_limit_exceeded")
    if status >= 500:
        message = _OPENAI_MESSAGES.get(status, f"The simulated upstream answered {status}.")
        return openai_error(message, "server_error")
    return openai_error(f"The simulated upstream answered {status}.", "invalid_request_error")
