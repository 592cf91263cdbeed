"""The Azure error shape, shared by Azure OpenAI and Foundry callers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.errors import GatewayError, ModelNotFound, RateLimited, Unauthorized, UpstreamError
from plugins.dialects.base import json_response


def azure_code(err: GatewayError) -> str:
    """Azure's own codes where the service has one; the status as text otherwise (as Azure does)."""
    if isinstance(err, UpstreamError) and err.code:
        return err.code
    if isinstance(err, RateLimited | Unauthorized):
        return str(err.status)
    if isinstance(err, ModelNotFound):
        return "DeploymentNotFound"
    return err.code or str(err.status)


def render_azure_error(err: GatewayError, request_id: str) -> web.Response:
    code = azure_code(err)
    error: dict[str, Any] = {"code": code, "message": err.message}
    if err.param:
        error["param"] = err.param
    headers = {**err.headers, "x-ms-error-code": code, "x-request-id": request_id}
    return json_response(err.status, {"error": error}, headers)
