"""Handlers for the three dialects' API routes."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.simulator import errors
from gateway.simulator.answers import compose
from gateway.simulator.delivery import abort_connection, hang, nap, send_stream
from gateway.simulator.dialects import Dialect, Operation
from gateway.simulator.faults import Fault, FaultKind
from gateway.simulator.inbound import DEFAULT_MODEL, Inbound, api_version, check_key, read
from gateway.simulator.jsonbody import json_response
from gateway.simulator.state import CONFIG, FAULTS, LIMITER, STOPPING

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LISTED_MODELS = (DEFAULT_MODEL,)


def _fault_error(inbound: Inbound, fault: Fault) -> errors.SimulatedError:
    error = errors.status_error(
        inbound.dialect,
        fault.status,
        inbound.operation,
        inbound.api_version,
        retry_after_ms=fault.retry_after_ms,
    )
    if fault.body is not None:
        error.body = fault.body
    return error


def operation_handler(dialect: Dialect, operation: Operation) -> Handler:
    """The handler for one operation (chat, completions, embeddings) in one dialect."""

    async def handle(request: web.Request) -> web.StreamResponse:
        app = request.app
        config, stopping = app[CONFIG], app[STOPPING]
        try:
            inbound = await read(request, dialect, operation, config.api_keys)
            fault = app[FAULTS].take(request.path, inbound.target)
            if fault is not None and fault.kind is FaultKind.STATUS:
                raise _fault_error(inbound, fault)
            if fault is not None and fault.kind is FaultKind.HANG:
                return await hang(request, stopping)
            answer = compose(inbound, config.reply)
            admission = app[LIMITER].admit(inbound.target, answer.tokens)
            if not admission.allowed:
                error = errors.status_error(
                    dialect,
                    429,
                    operation,
                    inbound.api_version,
                    retry_after_ms=admission.retry_after_ms,
                    exceeded=admission.exceeded,
                )
                error.headers.update(admission.headers())
                raise error
        except errors.SimulatedError as exc:
            await nap(config.first_byte_latency_s, stopping)
            return exc.response()

        headers = admission.headers()
        await nap(config.first_byte_latency_s, stopping)
        pause_s = fault.pause_s if fault is not None and fault.kind is FaultKind.PAUSE else 0.0
        drop = fault is not None and fault.kind is FaultKind.DROP_AFTER_CHUNKS
        if answer.frames is not None:
            return await send_stream(
                request,
                answer.frames,
                headers,
                stopping,
                gap_s=config.latency_per_token_s + pause_s,
                drop_after=fault.chunks if drop and fault is not None else None,
            )
        if drop:
            return abort_connection(request)
        await nap(pause_s, stopping)
        return json_response(answer.body, headers=headers)

    return handle


async def _guarded(request: web.Request, dialect: Dialect, answer: Callable[[], web.Response]) -> web.Response:
    """Key and api-version checks for the GET routes, then ``answer``."""
    try:
        check_key(request, dialect, request.app[CONFIG].api_keys)
        api_version(request, dialect)
    except errors.SimulatedError as exc:
        return exc.response()
    return answer()


def _model_object(model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": int(time.time()), "owned_by": "simulator"}


async def openai_models(request: web.Request) -> web.Response:
    listing = {"object": "list", "data": [_model_object(model) for model in LISTED_MODELS]}
    return await _guarded(request, Dialect.OPENAI, lambda: json_response(listing))


async def openai_model(request: web.Request) -> web.Response:
    model = _model_object(request.match_info["model"])  # every model exists in the simulator
    return await _guarded(request, Dialect.OPENAI, lambda: json_response(model))


async def foundry_info(request: web.Request) -> web.Response:
    info = {
        "model_name": request.query.get("model") or DEFAULT_MODEL,
        "model_type": "chat-completions",
        "model_provider_name": "Simulator",
    }
    return await _guarded(request, Dialect.FOUNDRY, lambda: json_response(info))


def dialect_of_path(path: str) -> Dialect:
    if path.startswith("/v1/"):
        return Dialect.OPENAI
    return Dialect.AZURE if path.startswith("/openai/") else Dialect.FOUNDRY


async def not_found(request: web.Request) -> web.Response:
    message = f"Resource not found: {request.method} {request.path}"
    return errors.not_found(dialect_of_path(request.path), message).response()
