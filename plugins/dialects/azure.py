"""Azure OpenAI: classic ``/openai/deployments/{id}/…?api-version=`` and the ``/openai/v1/…`` API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from aiohttp import web

from gateway.config import Config, Deployment, Team
from gateway.errors import GatewayError, InvalidApiVersion
from plugins.dialects.azure_errors import render_azure_error
from plugins.dialects.base import Dialect, OutboundRequest, bearer, require_dated_api_version
from plugins.dialects.params import STREAM_USAGE_SINCE, rewrite_for_azure, version_date
from plugins.dialects.streaming import plan_stream

if TYPE_CHECKING:
    from gateway.exchange import Exchange

V1_API_VERSIONS = frozenset({"v1", "preview"})


class AzureDialect(Dialect):
    name = "azure"

    def __init__(self, *, v1: bool = False) -> None:
        #: The ``/openai/v1/`` API: optional ``api-version`` (v1|preview), model in the body.
        self.v1 = v1

    def credential(self, request: web.Request) -> str | None:
        return request.headers.get("api-key") or bearer(request)

    def check_api_version(self, request: web.Request) -> None:
        version = request.query.get("api-version")
        if self.v1:
            if version is not None and version not in V1_API_VERSIONS:
                raise InvalidApiVersion(
                    f"Unsupported api-version {version!r} for the v1 API: use 'v1' or 'preview', or leave it out.",
                    param="api-version",
                )
            return
        require_dated_api_version(request, "2024-10-21")

    def model_name(self, request: web.Request, body: dict[str, Any] | None, team: Team, config: Config) -> str | None:
        if not self.v1 and "deployment" in request.match_info:
            return request.match_info["deployment"]
        model = (body or {}).get("model")
        return model if isinstance(model, str) else None

    def render_error(self, err: GatewayError, request_id: str) -> web.Response:
        return render_azure_error(err, request_id)

    def render_request(self, exchange: Exchange, deployment: Deployment, body: dict[str, Any]) -> OutboundRequest:
        rewrite_for_azure(body, deployment.api_version)
        body["model"] = deployment.deployment
        plan = plan_stream(exchange, body, self.supports_stream_usage(deployment))
        url = (
            f"{deployment.url}/openai/deployments/{quote(deployment.deployment or '', safe='')}/"
            f"{exchange.op}?api-version={deployment.api_version}"
        )
        headers = {"api-key": deployment.api_key, "Content-Type": "application/json"}
        return OutboundRequest(url, headers, orjson.dumps(body), plan)

    def supports_stream_usage(self, deployment: Deployment) -> bool:
        return version_date(deployment.api_version) >= STREAM_USAGE_SINCE
