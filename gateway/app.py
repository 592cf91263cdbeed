"""The aiohttp application: routes for the three dialects and ops, resources in ``cleanup_ctx``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.catalog import get_model, list_models, model_info
from gateway.config import Config
from gateway.errors import GatewayError, MethodNotAllowed, NotFound
from gateway.metrics import Metrics, flushing
from gateway.pipeline import Generation, Pipeline, request_id_of
from gateway.plugin import Plugin
from gateway.send_deadline import SendDeadlines
from gateway.store import Store, open_store
from gateway.upstream import UpstreamClient
from plugins.dialects import AZURE, AZURE_V1, FOUNDRY, OPENAI, Dialect
from plugins.ratelimit import RateLimitPlugin
from plugins.routing import Router
from plugins.usage import usage_response

PluginFactory = Callable[[Config, "Runtime"], list[Plugin]]


@dataclass(eq=False)
class Runtime:
    """What the running app holds: filled in by ``cleanup_ctx``, read by the handlers."""

    config: Config
    plugin_factory: PluginFactory | None = None
    upstream: UpstreamClient | None = None
    #: Shared state for every replica: quota counters and routing cooldowns.
    store: Store | None = None
    pipeline: Pipeline | None = None
    #: Set on SIGTERM: ``/readyz`` answers 503 so load balancers stop sending traffic.
    draining: bool = False
    #: Outlives config generations, so counters survive a reload; plugins feed it what they know.
    metrics: Metrics = field(default_factory=Metrics)

    def generation(self, config: Config) -> Generation:
        plugins = self.plugin_factory(config, self) if self.plugin_factory else []
        router = next((p for p in plugins if isinstance(p, Router)), None) or Router(config)
        if router not in plugins:
            plugins.append(router)
        return Generation(config, router, tuple(plugins))


RUNTIME = web.AppKey("runtime", Runtime)

#: (path, dialect, operation) for every inference route.
INFERENCE_ROUTES: tuple[tuple[str, Dialect, str], ...] = (
    ("/v1/chat/completions", OPENAI, "chat/completions"),
    ("/v1/completions", OPENAI, "completions"),
    ("/v1/embeddings", OPENAI, "embeddings"),
    ("/openai/deployments/{deployment}/chat/completions", AZURE, "chat/completions"),
    ("/openai/deployments/{deployment}/completions", AZURE, "completions"),
    ("/openai/deployments/{deployment}/embeddings", AZURE, "embeddings"),
    ("/openai/v1/chat/completions", AZURE_V1, "chat/completions"),
    ("/openai/v1/completions", AZURE_V1, "completions"),
    ("/openai/v1/embeddings", AZURE_V1, "embeddings"),
    ("/chat/completions", FOUNDRY, "chat/completions"),
    ("/embeddings", FOUNDRY, "embeddings"),
    ("/models/chat/completions", FOUNDRY, "chat/completions"),
    ("/models/embeddings", FOUNDRY, "embeddings"),
)

CatalogHandler = Callable[[web.Request, Dialect, Config], Awaitable[web.Response]]
CATALOG_ROUTES: tuple[tuple[str, Dialect, CatalogHandler], ...] = (
    ("/v1/models", OPENAI, list_models),
    ("/v1/models/{model}", OPENAI, get_model),
    ("/openai/models", AZURE, list_models),
    ("/openai/models/{model}", AZURE, get_model),
    ("/openai/v1/models", AZURE_V1, list_models),
    ("/openai/v1/models/{model}", AZURE_V1, get_model),
    ("/info", FOUNDRY, model_info),
    ("/models/info", FOUNDRY, model_info),
)


def build_app(config: Config, plugin_factory: PluginFactory | None = None) -> web.Application:
    runtime = Runtime(config, plugin_factory)
    # Body size is enforced by the pipeline per config generation; this is only aiohttp's own cap.
    app = web.Application(client_max_size=config.server.max_body_bytes + 1)
    app[RUNTIME] = runtime
    app.cleanup_ctx.append(_metrics_flush_ctx)
    app.cleanup_ctx.append(_pipeline_ctx)
    if config.metrics.port is not None:
        app.cleanup_ctx.append(_metrics_site_ctx)
    router = app.router
    for path, dialect, op in INFERENCE_ROUTES:
        router.add_route("POST", path, partial(_inference, runtime, dialect, op))
        router.add_route("*", path, partial(_wrong_method, dialect, "POST"))
    for path, dialect, handler in CATALOG_ROUTES:
        router.add_route("GET", path, partial(_catalog, runtime, dialect, handler))
        router.add_route("*", path, partial(_wrong_method, dialect, "GET"))
    router.add_get("/v1/usage", partial(_usage, runtime))
    router.add_get("/healthz", _healthz)
    router.add_get("/readyz", partial(_readyz, runtime))
    if config.metrics.port is None:
        router.add_get("/metrics", partial(_metrics, runtime))
    router.add_route("*", "/{tail:.*}", _unknown_route)
    return app


async def _pipeline_ctx(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    runtime.store = open_store(runtime.config.store)
    runtime.store.add_error_listener(runtime.metrics.store_error)
    runtime.upstream = UpstreamClient.create()
    generation = runtime.generation(runtime.config)
    for plugin in generation.plugins:
        await plugin.start()
    sends = SendDeadlines(asyncio.get_running_loop())
    runtime.pipeline = Pipeline(generation, runtime.upstream, sends)
    try:
        async with sends.sweeping():
            yield
    finally:
        await runtime.pipeline.drain()
        for plugin in reversed(runtime.pipeline.generation.plugins):
            await plugin.close()
        await runtime.upstream.close()
        await runtime.store.close()


async def _metrics_flush_ctx(app: web.Application) -> AsyncIterator[None]:
    # Before the pipeline's: entered first, left last, after the final requests completed.
    async with flushing(app[RUNTIME].metrics):
        yield


async def _metrics_site_ctx(app: web.Application) -> AsyncIterator[None]:
    """``metrics.port``: ``/metrics`` on a port of its own, e.g. one only Prometheus can reach."""
    runtime = app[RUNTIME]
    config = runtime.config
    assert config.metrics.port is not None
    metrics_app = web.Application()
    metrics_app.router.add_get("/metrics", partial(_metrics, runtime))
    runner = web.AppRunner(metrics_app, access_log=None)
    await runner.setup()
    host = config.metrics.host or config.server.host
    # Every worker binds the port; whichever answers serves the sum of all workers.
    await web.TCPSite(runner, host, config.metrics.port, reuse_port=config.server.workers > 1).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def _inference(runtime: Runtime, dialect: Dialect, op: str, request: web.Request) -> web.StreamResponse:
    assert runtime.pipeline is not None
    return await runtime.pipeline.handle(request, dialect, op)


async def _catalog(runtime: Runtime, dialect: Dialect, handler: CatalogHandler, request: web.Request) -> web.Response:
    assert runtime.pipeline is not None
    try:
        return await handler(request, dialect, runtime.pipeline.generation.config)
    except GatewayError as err:
        return dialect.render_error(err, request_id_of(request))


async def _usage(runtime: Runtime, request: web.Request) -> web.Response:
    assert runtime.pipeline is not None
    generation = runtime.pipeline.generation
    limiter = next((p for p in generation.plugins if isinstance(p, RateLimitPlugin)), None)
    return await usage_response(request, generation.config, limiter)


async def _wrong_method(dialect: Dialect, allowed: str, request: web.Request) -> web.Response:
    err = MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}; use {allowed}.")
    response = dialect.render_error(err, request_id_of(request))
    response.headers["Allow"] = allowed
    return response


async def _unknown_route(request: web.Request) -> web.Response:
    err = NotFound(f"Unknown route: {request.method} {request.path}.")
    return OPENAI.render_error(err, request_id_of(request))


async def _healthz(request: web.Request) -> web.Response:
    # The pid tells workers apart behind one port (SO_REUSEPORT).
    return web.json_response({"status": "serving", "pid": os.getpid()})


async def _metrics(runtime: Runtime, request: web.Request) -> web.Response:
    metrics = runtime.metrics
    if metrics.multiprocess_dir:
        metrics.flush()  # this worker's own latest, on the loop's thread
        # Reading every worker's files is disk work: keep it off the event loop.
        body = await asyncio.get_running_loop().run_in_executor(None, metrics.exposition)
    else:
        body = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _readyz(runtime: Runtime, request: web.Request) -> web.Response:
    if runtime.draining or runtime.pipeline is None:
        return web.json_response({"status": "draining" if runtime.draining else "starting"}, status=503)
    ready: dict[str, str] = {"status": "ready"}
    if runtime.store is not None and not await runtime.store.ping():
        # Every replica shares the store: as a readiness probe's verdict, its outage would take
        # every replica out of service at once. ``?store=optional`` reports it and stays ready.
        if request.query.get("store") != "optional":
            return web.json_response({"status": "unready", "reason": "the store does not answer"}, status=503)
        ready["store"] = "unreachable"
    for plugin in runtime.pipeline.generation.plugins:
        problem = await plugin.readiness()
        if problem:
            return web.json_response({"status": "unready", "reason": problem}, status=503)
    return web.json_response(ready)
