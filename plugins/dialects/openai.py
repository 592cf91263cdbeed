"""OpenAI: ``/v1/…``, Bearer keys, the model in the body."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.config import Config, Deployment, Team
from gateway.errors import GatewayError
from plugins.dialects.base import Dialect, OutboundRequest, bearer, json_response
from plugins.dialects.params import reject_azure_only
from plugins.dialects.streaming import plan_stream

if TYPE_CHECKING:
    from gateway.exchange import Exchange


class OpenAIDialect(Dialect):
    name = "openai"

    def credential(self, request: web.Request) -> str | None:
        return bearer(request)

    def model_name(self, request: web.Request, body: dict[str, Any] | None, team: Team, config: Config) -> str | None:
        model = (body or {}).get("model")
        return model if isinstance(model, str) else None

    def render_error(self, err: GatewayError, request_id: str) -> web.Response:
        payload = {"error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
        return json_response(err.status, payload, {**err.headers, "x-request-id": request_id})

    def render_request(self, exchange: Exchange, deployment: Deployment, body: dict[str, Any]) -> OutboundRequest:
        reject_azure_only(body, "OpenAI")
        body["model"] = deployment.model
        plan = plan_stream(exchange, body, target_reports_usage=True)
        headers = {"Authorization": f"Bearer {deployment.api_key}", "Content-Type": "application/json"}
        return OutboundRequest(f"{deployment.url}/{exchange.op}", headers, orjson.dumps(body), plan)

    def supports_stream_usage(self, deployment: Deployment) -> bool:
        return True
