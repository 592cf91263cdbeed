"""The gateway's one exception tree.

Every failure that reaches a client is a ``GatewayError``: it knows its HTTP status and what to
tell the caller. Dialects render it into their own error shape. Errors from below (sockets,
TLS and the HTTP parser on the upstream hop; redis) are translated into this tree at one boundary
each (``gateway.upstream``, the store modules) with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class GatewayError(Exception):
    """A failure with an HTTP status and a message that is safe to show the caller."""

    status: int = 500
    #: OpenAI's ``error.type``.
    type: str = "server_error"
    #: OpenAI's ``error.code`` and Azure's ``error.code`` / ``x-ms-error-code``.
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def azure_code(self) -> str:
        """The code Azure-shaped errors carry: the service's own, or the status as text."""
        return self.code or str(self.status)


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class InvalidApiVersion(BadRequest):
    code = "invalid_api_version"


class ExtraParametersNotAllowed(BadRequest):
    """Foundry's own rejection of parameters it does not define; Foundry callers get ``detail``."""

    code = "extra_parameters_not_allowed"

    def __init__(self, names: list[str], *, detail: str) -> None:
        super().__init__(detail, param=names[0] if names else None)
        self.names = names
        self.detail = detail


class Unauthorized(GatewayError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(GatewayError):
    """The client took longer than ``server.body_timeout_s`` to send its body."""

    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    """A quota or a pool's capacity is spent; carries when capacity frees."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit: str, retry_after_ms: int, type: str = "requests") -> None:
        seconds = max(0, -(-retry_after_ms // 1000))  # whole seconds, rounded up
        super().__init__(
            message,
            headers={"retry-after": str(seconds), "retry-after-ms": str(max(0, retry_after_ms))},
        )
        self.limit = limit
        self.retry_after_ms = retry_after_ms
        self.type = type


class StoreUnavailable(GatewayError):
    """The quota store cannot answer and the config says fail closed."""

    status = 503
    code = "store_unavailable"


class StoreError(GatewayError):
    """The store did not answer in time, refused, or its circuit breaker is open.

    The store modules raise it for every redis failure (``raise StoreError(...) from exc``); the
    rate limiter turns it into an admission (``on_error: open``) or ``StoreUnavailable``.
    """

    status = 503
    code = "store_error"


class ServiceUnavailable(GatewayError):
    status = 503
    code = "service_unavailable"


class OutOfDescriptors(ServiceUnavailable):
    """The gateway has no file descriptor left to open an upstream connection: its own limit,
    not the deployment's failure, so it neither fails over nor counts against the deployment."""

    code = "gateway_overloaded"


class UpstreamError(GatewayError):
    """An upstream answered with an error status; the status is kept, the shape is translated."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, param=param, code=code, headers=headers)
        self.status = status
        self.type = type or _openai_type(status)
        self.body = body


class UpstreamUnavailable(GatewayError):
    """No answer from an upstream: connect failure, reset, or a timeout before the first byte."""

    status = 502
    code = "upstream_unavailable"

    def __init__(self, message: str, *, reason: str, status: int = 502) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


def _openai_type(status: int) -> str:
    if status == 429:
        return "requests"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"
