"""Model listings and Foundry's ``/info``, answered from config: no upstream lists our aliases."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.config import Config, Team
from gateway.errors import BadRequest, ModelNotFound
from plugins.auth import authenticate
from plugins.dialects import Dialect
from plugins.dialects.base import json_response

#: A fixed creation time: the listing describes config, not the upstream models' history.
CREATED = 1_700_000_000


def visible_models(config: Config, team: Team) -> list[str]:
    return [name for name in config.models if team.may_use(name)]


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": CREATED, "owned_by": "gateway"}


async def list_models(request: web.Request, dialect: Dialect, config: Config) -> web.Response:
    team = _authorise(request, dialect, config)
    data = [_model(name) for name in visible_models(config, team)]
    return json_response(200, {"object": "list", "data": data}, {})


async def get_model(request: web.Request, dialect: Dialect, config: Config) -> web.Response:
    team = _authorise(request, dialect, config)
    name = request.match_info["model"]
    if name not in config.models or not team.may_use(name):
        raise ModelNotFound(f"The model '{name}' does not exist or you do not have access to it.", param="model")
    return json_response(200, _model(name), {})


async def model_info(request: web.Request, dialect: Dialect, config: Config) -> web.Response:
    """Foundry's ``GET /info``: the model named by header or ``?model=``, or the team's only one."""
    team = _authorise(request, dialect, config)
    name = request.headers.get("azureml-model-deployment") or request.query.get("model")
    if not name:
        models = visible_models(config, team)
        if len(models) != 1:
            raise BadRequest(
                "This endpoint serves several models: name one with ?model= or the azureml-model-deployment header.",
                param="model",
            )
        name = models[0]
    if name not in config.models or not team.may_use(name):
        raise ModelNotFound(f"The model '{name}' does not exist or you do not have access to it.", param="model")
    first = config.pool(name)[0]
    payload = {
        "model_name": first.model or name,
        "model_type": "chat-completions",
        "model_provider_name": {"openai": "OpenAI", "azure": "Azure OpenAI", "foundry": "Azure AI Foundry"}[
            first.dialect
        ],
    }
    return json_response(200, payload, {})


def _authorise(request: web.Request, dialect: Dialect, config: Config) -> Team:
    team, _ = authenticate(request, dialect, config)
    dialect.check_api_version(request)
    return team
