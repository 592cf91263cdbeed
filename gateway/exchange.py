"""The per-request object every pipeline stage and plugin works on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.config import Config, Deployment, Team
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from aiohttp import web

    from plugins.dialects.base import Dialect as InboundDialect


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: True when the upstream reported nothing and the gateway counted the tokens itself.
    estimated: bool = False

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True, eq=False)
class Exchange:
    """One client request, from the first byte read to the last usage recorded.

    The config is captured once at the start, so a reload never changes a request in flight.
    """

    request: web.Request
    config: Config
    inbound: InboundDialect
    #: ``chat/completions``, ``completions`` or ``embeddings``.
    op: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)

    team: Team | None = None
    #: A short, non-reversible id of the key used (a hash prefix), for logs.
    key_id: str = "-"
    #: The name the client asked for: a ``models:`` key, or a deployment name that pins it.
    model: str | None = None
    #: Set when the client named exactly one deployment (``azureml-model-deployment`` or its name).
    pinned: Deployment | None = None
    body: dict[str, Any] | None = None
    stream: bool = False
    #: The client asked for a usage chunk itself (``stream_options.include_usage``).
    client_wants_usage: bool = False
    #: The Foundry ``extra-parameters`` mode the client asked for, after aliases.
    extra_parameters: str | None = None

    #: Tokens estimated at admission: prompt estimate plus the completion budget.
    prompt_estimate: int = 0
    reserved_tokens: int = 0

    deployment: Deployment | None = None
    attempts: int = 0
    status: int = 0
    usage: Usage | None = None
    ttfb_s: float | None = None
    error: GatewayError | None = None
    #: The upstream's ``x-request-id``, which the client then sees in place of ``request_id``.
    upstream_request_id: str | None = None
    #: The client went away before the response was complete.
    client_gone: bool = False

    #: Headers plugins add to the response (``x-ratelimit-*`` for the team).
    response_headers: dict[str, str] = field(default_factory=dict)
    #: Per-plugin scratch space, keyed by the plugin's name.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started
