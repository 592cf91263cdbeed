"""The narrow interface every dialect implements.

A dialect is not a broadcast hook: exactly one dialect parses a request (the inbound one, chosen
by route) and exactly one renders it upstream (the deployment's). Each side has a few methods:

- inbound: ``credential``, ``check_api_version``, ``accept_body``, ``model_name``, ``render_error``;
- outbound: ``render_request``, ``parse_error``, ``supports_stream_usage``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import orjson
from aiohttp import web

from gateway.config import Config, Deployment, Team
from gateway.errors import GatewayError, InvalidApiVersion, Unauthorized, UpstreamError

if TYPE_CHECKING:
    from gateway.exchange import Exchange

JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """How the gateway treats one upstream stream."""

    #: The gateway asked for ``include_usage`` on the client's behalf: withhold that one chunk.
    withhold_usage_chunk: bool = False
    #: The client asked for usage but the target cannot send a usage chunk: synthesize one.
    synthesize_usage_chunk: bool = False
    #: Re-frame every event as ``data: …\\n\\n`` (the azure-ai-inference parser rejects anything else).
    strict_framing: bool = False
    #: The target sends a usage chunk: content need only be counted roughly, for a stream cut short.
    usage_expected: bool = False

    @property
    def per_event(self) -> bool:
        """Whether forwarding must wait for event boundaries (otherwise raw chunks pass as read)."""
        return self.withhold_usage_chunk or self.synthesize_usage_chunk or self.strict_framing


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    stream_plan: StreamPlan


class Dialect(ABC):
    #: The label used in metrics and logs.
    name: ClassVar[str]
    #: Streams to this dialect's clients must be strictly ``data: …\n\n``.
    strict_sse: ClassVar[bool] = False

    # -- inbound --------------------------------------------------------------------------------

    @abstractmethod
    def credential(self, request: web.Request) -> str | None:
        """The caller's key, or ``None`` when it sent none. Raise ``Unauthorized`` if it is ambiguous."""

    def check_api_version(self, request: web.Request) -> None:
        """Raise ``InvalidApiVersion`` for a missing or malformed ``api-version``."""

    @abstractmethod
    def model_name(self, request: web.Request, body: dict[str, Any] | None, team: Team, config: Config) -> str | None:
        """The model (or deployment) name this request asks for, or ``None`` if it names none."""

    def accept_body(self, request: web.Request, op: str, body: dict[str, Any]) -> str | None:
        """Dialect-specific checks of the caller's body (Foundry's ``extra-parameters``); may edit it."""
        return None

    @abstractmethod
    def render_error(self, err: GatewayError, request_id: str) -> web.Response:
        """The error in this dialect's shape, with the error's status and headers."""

    # -- outbound -------------------------------------------------------------------------------

    @abstractmethod
    def render_request(self, exchange: Exchange, deployment: Deployment, body: dict[str, Any]) -> OutboundRequest:
        """The upstream request for ``deployment``. ``body`` is the caller's, already a private copy."""

    def supports_stream_usage(self, deployment: Deployment) -> bool:
        """Whether ``stream_options.include_usage`` is accepted by this deployment."""
        return False

    def parse_error(self, status: int, raw: bytes, headers: dict[str, str]) -> UpstreamError:
        """An upstream error body, whatever its shape, as an ``UpstreamError`` keeping the status."""
        return parse_upstream_error(status, raw, headers)


API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")


def require_dated_api_version(request: web.Request, example: str) -> None:
    """Azure's and Foundry's rule: ``api-version`` is required, as ``YYYY-MM-DD[-preview]``."""
    version = request.query.get("api-version")
    if version is None:
        raise InvalidApiVersion(
            f"Missing required query parameter 'api-version' (for example ?api-version={example}).",
            param="api-version",
            code="MissingApiVersion",
        )
    if not API_VERSION.match(version):
        raise InvalidApiVersion(
            f"Malformed api-version {version!r}: expected YYYY-MM-DD or YYYY-MM-DD-preview.",
            param="api-version",
        )


def bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization")
    if not value:
        return None
    if value[:7].lower() != "bearer " or not (token := value[7:].strip()):
        raise Unauthorized("The Authorization header must be 'Bearer <key>'.")
    return token


def json_response(status: int, payload: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=JSON_CONTENT_TYPE, headers=headers)


def parse_upstream_error(status: int, raw: bytes, headers: dict[str, str]) -> UpstreamError:
    """Read OpenAI/Azure ``{"error":{…}}`` and Foundry ``{"detail": …}`` bodies alike."""
    try:
        payload: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        payload = None
    message = f"The upstream answered {status}."
    code: str | None = None
    param: str | None = None
    kind: str | None = None
    if isinstance(payload, dict):
        error = payload.get("error")
        detail = payload.get("detail")
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code = None if error.get("code") is None else str(error.get("code"))
            param = error.get("param") if isinstance(error.get("param"), str) and error.get("param") else None
            kind = error.get("type") if isinstance(error.get("type"), str) else None
        elif isinstance(error, str):
            message = error
        elif isinstance(detail, str):
            message = detail
        elif isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            loc = first.get("loc")
            if isinstance(loc, list) and len(loc) > 1:
                param = str(loc[1])
            message = "; ".join(
                f"{d.get('msg', 'invalid')}: {'.'.join(str(x) for x in d.get('loc', [])[1:])}"
                for d in detail
                if isinstance(d, dict)
            )
        elif isinstance(payload.get("message"), str):
            message = payload["message"]
    elif raw:
        message = raw[:500].decode("utf-8", "replace")
    return UpstreamError(status, message, code=code, param=param, type=kind, body=payload)
