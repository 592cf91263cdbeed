"""Azure AI Foundry (Model Inference): ``/chat/completions?api-version=``, ``extra-parameters``."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from gateway.config import Config, Deployment, Team
from gateway.errors import BadRequest, ExtraParametersNotAllowed, GatewayError, Unauthorized
from plugins.dialects.azure_errors import render_azure_error
from plugins.dialects.base import Dialect, OutboundRequest, bearer, json_response, require_dated_api_version
from plugins.dialects.params import extra_parameters, foundry_extra_detail, reject_azure_only
from plugins.dialects.streaming import plan_stream

if TYPE_CHECKING:
    from gateway.exchange import Exchange

MODES = ("error", "drop", "pass-through")
#: Spellings the service accepted once; accepted here, never emitted.
MODE_ALIASES = {"allow": "pass-through", "pass_through": "pass-through"}


class FoundryDialect(Dialect):
    name = "foundry"
    # azure-ai-inference raises on comments, CRLF, ``event:`` lines and ``data:`` without a space.
    strict_sse = True

    def credential(self, request: web.Request) -> str | None:
        api_key = request.headers.get("api-key")
        token = bearer(request)
        # The SDK sends the same key twice; two different keys are a caller's mistake, not a choice.
        if api_key and token and not hmac.compare_digest(api_key.encode(), token.encode()):
            raise Unauthorized("The api-key and Authorization headers carry different keys.")
        return api_key or token

    def check_api_version(self, request: web.Request) -> None:
        require_dated_api_version(request, "2024-05-01-preview")

    def model_name(self, request: web.Request, body: dict[str, Any] | None, team: Team, config: Config) -> str | None:
        header = request.headers.get("azureml-model-deployment")
        if header:
            return header
        model = (body or {}).get("model")
        if isinstance(model, str) and model:
            return model
        allowed = team.models if team.models is not None else frozenset(config.models)
        return next(iter(allowed)) if len(allowed) == 1 else None

    def extra_parameters_mode(self, request: web.Request) -> str:
        value = request.headers.get("extra-parameters")
        if value is None:
            legacy = request.headers.get("unknown_params")
            return MODE_ALIASES.get(legacy, "error") if legacy else "error"
        mode = MODE_ALIASES.get(value, value)
        if mode not in MODES:
            raise ExtraParametersNotAllowed(
                [],
                detail=f"Unexpected EXTRA_PARAMETERS option {value}, expected options are {list(MODES)!r}",
            )
        return mode

    def accept_body(self, request: web.Request, op: str, body: dict[str, Any]) -> str:
        """Enforce the caller's ``extra-parameters`` as the service would; returns the mode."""
        mode = self.extra_parameters_mode(request)
        extras = extra_parameters(op, body)
        if extras:
            if mode == "error":
                raise ExtraParametersNotAllowed(extras, detail=foundry_extra_detail(extras))
            if mode == "drop":
                for name in extras:
                    del body[name]
        return mode

    def render_error(self, err: GatewayError, request_id: str) -> web.Response:
        if isinstance(err, ExtraParametersNotAllowed):
            return json_response(err.status, {"detail": err.detail}, {"x-request-id": request_id})
        return render_azure_error(err, request_id)

    def render_request(self, exchange: Exchange, deployment: Deployment, body: dict[str, Any]) -> OutboundRequest:
        if exchange.op == "completions":
            raise BadRequest(
                f"Model {exchange.model!r} is served by a Foundry deployment, which has no /completions "
                "operation. Use /chat/completions.",
            )
        reject_azure_only(body, "Foundry")
        if deployment.model:
            body["model"] = deployment.model
        else:
            body.pop("model", None)  # a single-model endpoint ignores it; our alias means nothing there
        if "max_completion_tokens" in body:
            budget = body.pop("max_completion_tokens")
            body.setdefault("max_tokens", budget)
        plan = plan_stream(exchange, body, target_reports_usage=False)
        headers = {
            "api-key": deployment.api_key,
            "Authorization": f"Bearer {deployment.api_key}",
            "Content-Type": "application/json",
        }
        if deployment.model_deployment:
            headers["azureml-model-deployment"] = deployment.model_deployment
        extras = extra_parameters(exchange.op, body)
        if extras:
            if deployment.extra_parameters == "error":
                raise ExtraParametersNotAllowed(extras, detail=foundry_extra_detail(extras))
            if deployment.extra_parameters == "drop":
                for name in extras:
                    del body[name]
            else:
                headers["extra-parameters"] = "pass-through"
        url = f"{deployment.url}/{exchange.op}?api-version={deployment.api_version}"
        return OutboundRequest(url, headers, orjson.dumps(body), plan)
