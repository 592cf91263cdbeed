"""The request pipeline, over one ``Exchange`` per request:

inbound parse -> authenticate -> admit -> route -> render outbound -> upstream call
  -> JSON relay, or SSE bytes forwarded as they arrive while usage is read on the side
  -> completed (always, in ``finally``): plugins reconcile, count and log
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import structlog
from aiohttp import web
from multidict import CIMultiDictProxy

from gateway.config import Config, Deployment
from gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    InvalidJSON,
    ModelNotFound,
    PayloadTooLarge,
    RequestTimeout,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.exchange import Exchange
from gateway.json_usage import json_usage
from gateway.plugin import Attempt, Plugin
from gateway.send_deadline import SendDeadlines
from gateway.sse import StreamRelay
from gateway.tokens import estimate_prompt
from gateway.upstream import UpstreamClient, UpstreamResponse
from gateway.validation import validate_body
from plugins.auth import authenticate
from plugins.dialects import OUTBOUND, Dialect
from plugins.dialects.base import StreamPlan
from plugins.routing import Router

#: Upstream response headers a client may see; ``x-ratelimit-*`` describe the organisation's
#: deployment, not the caller's team, so the team's own replace them.
FORWARDED_HEADERS = ("retry-after", "retry-after-ms", "x-request-id")
#: Statuses after which another deployment is tried.
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
CLIENT_CLOSED = 499


@dataclass(frozen=True, slots=True)
class Generation:
    """Everything one config generation serves with. A reload swaps in a new one atomically."""

    config: Config
    router: Router
    plugins: tuple[Plugin, ...]
    # Per hook, only the plugins that implement it: a no-op hook still costs a coroutine per request.
    starters: tuple[Plugin, ...] = field(init=False)
    admitters: tuple[Plugin, ...] = field(init=False)
    observers: tuple[Plugin, ...] = field(init=False)
    completers: tuple[Plugin, ...] = field(init=False)

    def __post_init__(self) -> None:
        hooks = (
            ("starters", "started"),
            ("admitters", "admit"),
            ("observers", "attempted"),
            ("completers", "completed"),
        )
        for attr, hook in hooks:
            object.__setattr__(self, attr, _implementing(self.plugins, hook))


class _Users:
    """How many requests hold each generation, so a retired one is closed after its last request."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}

    def acquire(self, gen: Generation) -> None:
        # Keyed by id: a generation in this map is alive, held by the requests it counts.
        self._counts[id(gen)] = self._counts.get(id(gen), 0) + 1

    def release(self, gen: Generation) -> None:
        key = id(gen)
        left = self._counts[key] - 1
        if left:
            self._counts[key] = left
            return
        del self._counts[key]
        idle = self._idle.pop(key, None)
        if idle is not None:
            idle.set()

    async def gone(self, gen: Generation) -> None:
        if id(gen) in self._counts:
            await self._idle.setdefault(id(gen), asyncio.Event()).wait()


class Pipeline:
    def __init__(self, generation: Generation, upstream: UpstreamClient, sends: SendDeadlines) -> None:
        self.generation = generation
        self.upstream = upstream
        #: Deadlines on writes to callers (``server.send_timeout_s``).
        self.sends = sends
        #: Completions still running after their client left; kept so they are not collected.
        self._detached: set[asyncio.Task[None]] = set()
        self._users = _Users()
        #: Generations replaced by a reload whose plugins close once their last request completes.
        self._retiring: set[asyncio.Task[None]] = set()

    def swap(self, generation: Generation) -> Generation:
        """Serve ``generation`` from the next request on; close the old one's plugins after its last."""
        old, self.generation = self.generation, generation  # one assignment: atomic on the loop
        task = asyncio.ensure_future(self._retire(old, generation))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return old

    async def _retire(self, old: Generation, new: Generation) -> None:
        await self._users.gone(old)
        for plugin in reversed(old.plugins):
            if plugin in new.plugins:  # a plugin instance both generations share stays open
                continue
            try:
                await plugin.close()
            except Exception:
                structlog.get_logger("gateway").exception("plugin_close_failed", plugin=plugin.name)

    async def handle(self, request: web.Request, dialect: Dialect, op: str) -> web.StreamResponse:
        gen = self.generation  # captured once: in-flight requests keep the config they started with
        ex = Exchange(request, gen.config, dialect, op, request_id_of(request))
        for plugin in gen.starters:
            plugin.started(ex)
        self._users.acquire(gen)  # released by ``_complete``, which the ``finally`` below always reaches
        try:
            await self._prepare(ex)
            for plugin in gen.admitters:
                await plugin.admit(ex)
            return await self._forward(ex, gen)
        except GatewayError as err:
            ex.error = err
            ex.status = err.status
            return self._error_response(ex, err)
        except asyncio.CancelledError:
            # Cancelled means the client left before the answer was complete, even mid-stream
            # after a 200 went out: the record says 499, as a proxy's access log would.
            ex.client_gone = True
            ex.status = CLIENT_CLOSED
            raise
        finally:
            if ex.client_gone:
                await self._complete_detached(ex, gen)
            else:
                await self._complete(ex, gen)

    # -- before the upstream --------------------------------------------------------------------

    async def _prepare(self, ex: Exchange) -> None:
        request, dialect, config = ex.request, ex.inbound, ex.config
        ex.team, ex.key_id = authenticate(request, dialect, config)
        dialect.check_api_version(request)
        body = validate_body(
            ex.op, await _read_json(request, config.server.max_body_bytes, config.server.body_timeout_s)
        )
        ex.extra_parameters = dialect.accept_body(request, ex.op, body)
        ex.body = body
        ex.stream = body.get("stream") is True
        options = body.get("stream_options")
        ex.client_wants_usage = ex.stream and isinstance(options, dict) and options.get("include_usage") is True
        name = dialect.model_name(request, body, ex.team, config)
        if not name:
            raise BadRequest("The request must name a model ('model' in the body).", param="model")
        if name in config.models:
            ex.model = name
        elif name in config.deployments:
            ex.model, ex.pinned = name, config.deployments[name]
        else:
            raise ModelNotFound(f"The model '{name}' does not exist or you do not have access to it.", param="model")
        if not _allowed(ex, name):
            raise Forbidden(f"Team '{ex.team.name}' is not allowed to use the model '{name}'.", param="model")
        ex.prompt_estimate = estimate_prompt(ex.op, body)

    # -- the upstream ---------------------------------------------------------------------------

    async def _forward(self, ex: Exchange, gen: Generation) -> web.StreamResponse:
        assert ex.body is not None
        router = gen.router
        plan = router.plan(ex)
        last: GatewayError | None = None
        for position, deployment in enumerate(plan):
            if not await router.acquire(ex, deployment):
                continue
            is_last = position == len(plan) - 1
            ex.attempts += 1
            ex.deployment = deployment
            target = OUTBOUND[deployment.dialect]
            outbound = target.render_request(ex, deployment, dict(ex.body))
            started = time.perf_counter()
            try:
                response = await self.upstream.send(outbound, deployment.timeouts)
            except UpstreamUnavailable as err:
                await self._attempted(ex, gen, Attempt(deployment, 0, None, err.reason, time.perf_counter() - started))
                last = err
                continue
            attempt = _attempt(deployment, response, time.perf_counter() - started)
            limit = ex.config.server.max_response_bytes
            if response.status >= 400:
                failure = await self._upstream_error(target, response, limit)
                await self._attempted(ex, gen, attempt)
                if response.status in RETRYABLE and not is_last:
                    last = failure
                    continue
                raise failure
            if ex.stream and response.headers.get("Content-Type", "").startswith("text/event-stream"):
                try:
                    await self._attempted(ex, gen, attempt)
                except BaseException:
                    response.close()  # never relayed: its connection must not stay open
                    raise
                return await self._relay_stream(ex, response, outbound.stream_plan)
            try:
                async with response:
                    raw = await response.read(limit)
            except UpstreamUnavailable as err:
                # Nothing went to the client yet: a body that broke off is a failed attempt like
                # a refused connection, and the next deployment may answer. One too large would
                # be as large there.
                broke = err.reason != "too_large"
                await self._attempted(ex, gen, _failed(attempt, err.reason, broke))
                if broke and not is_last:
                    last = err
                    continue
                raise
            await self._attempted(ex, gen, attempt)
            return await self._relay_json(ex, response, raw)
        raise last or router.unavailable(ex)

    async def _attempted(self, ex: Exchange, gen: Generation, attempt: Attempt) -> None:
        for plugin in gen.observers:
            await plugin.attempted(ex, attempt)

    async def _upstream_error(self, target: Dialect, response: UpstreamResponse, limit: int) -> GatewayError:
        async with response:
            try:
                raw = await response.read(limit)
            except UpstreamUnavailable as broken:
                return broken
        failure = target.parse_error(response.status, raw, {})
        failure.headers.update(_forwarded(response.headers, ("retry-after", "retry-after-ms")))
        return failure

    async def _relay_json(self, ex: Exchange, response: UpstreamResponse, raw: bytes) -> web.Response:
        ex.ttfb_s = ex.elapsed_s
        ex.status = response.status
        ex.usage = json_usage(raw, ex.prompt_estimate)
        headers = self._response_headers(ex, response.headers)
        content_type = response.headers.get("Content-Type", "application/json")
        headers["Content-Type"] = content_type
        client = web.Response(status=response.status, body=raw, headers=headers)
        # Send it now: the completion hooks (a quota reconcile is a store round trip) then run
        # after the client has its answer, not before.
        sends, transport = self.sends, ex.request.transport
        sends.begin(transport, ex.config.server.send_timeout_s)
        try:
            await client.prepare(ex.request)
            await client.write_eof()
        except ConnectionError:
            ex.client_gone = True
        finally:
            sends.end(transport)
        return client

    async def _relay_stream(self, ex: Exchange, response: UpstreamResponse, plan: StreamPlan) -> web.StreamResponse:
        headers = self._response_headers(ex, response.headers)
        headers["Content-Type"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        client = _EventStream(status=response.status, headers=headers)
        ex.status = response.status
        relay = StreamRelay(plan, ex.prompt_estimate)
        last = b""
        sent = False  # anything, the headers included, has gone to the client
        sends, transport, send_timeout_s = self.sends, ex.request.transport, ex.config.server.send_timeout_s
        try:
            await client.prepare(ex.request)
            async with response:
                while True:
                    if not sent and not response.ready():
                        # The upstream is still thinking: the client hears its 200 now, not
                        # with the first event.
                        await client.write(b"")
                        sent = True
                    chunk = await response.readany()
                    if not chunk:
                        break
                    out = relay.feed(chunk)
                    if not out:
                        continue
                    if ex.ttfb_s is None:
                        ex.ttfb_s = ex.elapsed_s
                    if response.at_eof():
                        last = out  # the end of the stream goes out with it, in one write
                        break
                    sends.begin(transport, send_timeout_s)
                    await client.write(out)
                    sends.end(transport)
                    sent = True
                last += relay.finish()
            sends.begin(transport, send_timeout_s)
            await client.write_eof(last)
        except UpstreamUnavailable as err:
            # After the first byte nothing is retried: the stream ends and the failure is recorded.
            ex.error = err
            await _end_quietly(client)
        except ConnectionError:
            ex.client_gone = True
            ex.status = CLIENT_CLOSED
        finally:
            sends.end(transport)  # a write that failed, or the last one
            ex.usage = relay.usage()
        return client

    # -- answers --------------------------------------------------------------------------------

    def _response_headers(self, ex: Exchange, upstream: CIMultiDictProxy[str]) -> dict[str, str]:
        headers = _forwarded(upstream, FORWARDED_HEADERS)
        ex.upstream_request_id = headers.get("x-request-id")
        headers.setdefault("x-request-id", ex.request_id)
        headers.update(ex.response_headers)
        return headers

    def _error_response(self, ex: Exchange, err: GatewayError) -> web.Response:
        response: web.Response = ex.inbound.render_error(err, ex.request_id)
        for name, value in ex.response_headers.items():
            response.headers.setdefault(name, value)
        return response

    async def _complete(self, ex: Exchange, gen: Generation) -> None:
        try:
            for plugin in gen.completers:
                try:
                    await plugin.completed(ex)
                except Exception:  # one plugin's failure must not cost the others their record
                    _log_plugin_failure(plugin, ex)
        finally:
            self._users.release(gen)

    async def _complete_detached(self, ex: Exchange, gen: Generation) -> None:
        """The client left: finish the record in a task of its own so a second cancel cannot cut it."""
        task = asyncio.ensure_future(self._complete(ex, gen))
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            pass

    async def drain(self) -> None:
        """Wait for completions of abandoned requests, then for retired generations to close (shutdown)."""
        if self._detached:
            await asyncio.gather(*self._detached, return_exceptions=True)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


# -- helpers ------------------------------------------------------------------------------------


async def _read_json(request: web.Request, limit: int, timeout_s: float) -> Any:
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"The request body is {length} bytes; the limit is {limit}.")
    content = request.content
    try:
        if length is not None and content.total_bytes >= length:
            # The usual case: the whole body came with the headers, so no timer is needed.
            return _parse_json(await content.readexactly(length) if length else b"")
        # One deadline for the whole body: a client trickling a byte at a time cannot hold a
        # handler (and its memory) for longer than this.
        async with asyncio.timeout(timeout_s):
            if length is not None:  # the usual case: one read of a known size
                return _parse_json(await request.content.readexactly(length) if length else b"")
            chunks: list[bytes] = []
            size = 0
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"The request body is over the limit of {limit} bytes.")
                chunks.append(chunk)
    except TimeoutError as exc:
        raise RequestTimeout(f"The request body did not arrive within {timeout_s:g} s.") from exc
    except asyncio.IncompleteReadError as exc:
        raise BadRequest("The request body ended before its Content-Length.") from exc
    return _parse_json(b"".join(chunks))


def _parse_json(raw: bytes) -> Any:
    if not raw:
        raise InvalidJSON("The request body is empty; expected a JSON object.")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidJSON(f"The request body is not valid JSON: {exc}.") from exc


def _allowed(ex: Exchange, name: str) -> bool:
    team = ex.team
    assert team is not None
    if team.may_use(name):
        return True
    # Pinning a deployment is allowed when the team may use a model that deployment serves.
    return ex.pinned is not None and any(
        team.may_use(model.name) and name in model.deployments for model in ex.config.models.values()
    )


#: Request ids: a random per-process prefix and a counter, unique across replicas and restarts
#: without the cost of a uuid4 per request.
_ID_PREFIX = os.urandom(6).hex()
_id_counter = itertools.count(1)


def request_id_of(request: web.Request) -> str:
    return request.headers.get("x-ms-client-request-id") or f"{_ID_PREFIX}{next(_id_counter):012x}"


def _forwarded(headers: CIMultiDictProxy[str], names: Iterable[str]) -> dict[str, str]:
    return {name: headers[name] for name in names if name in headers}


def _attempt(deployment: Deployment, response: UpstreamResponse, latency_s: float) -> Attempt:
    headers = response.headers
    return Attempt(
        deployment,
        response.status,
        _retry_after_ms(headers) if response.status >= 400 else None,
        "ok" if response.status < 400 else "status",
        latency_s,
        _int_header(headers, "x-ratelimit-remaining-tokens"),
        _int_header(headers, "x-ratelimit-remaining-requests"),
    )


def _failed(attempt: Attempt, reason: str, broke: bool) -> Attempt:
    """``attempt`` whose answer's body failed: a break counts as no answer (status 0) for routing."""
    return replace(attempt, status=0 if broke else attempt.status, reason=reason)


def _int_header(headers: CIMultiDictProxy[str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _retry_after_ms(headers: CIMultiDictProxy[str]) -> int | None:
    for name, scale in (("retry-after-ms", 1.0), ("x-ms-retry-after-ms", 1.0), ("retry-after", 1000.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0, int(float(value) * scale))
            except ValueError:
                continue  # an HTTP-date: rare upstream, and the next header may say more
    return None


class _EventStream(web.StreamResponse):
    """An SSE response whose status line and headers go out with its first event when that has
    already arrived (aiohttp's StreamResponse sends them at once, in a write of their own): a
    stream the upstream sent in one read is one write to the client, headers and end included."""

    _send_headers_immediately = False


async def _end_quietly(client: web.StreamResponse) -> None:
    try:
        await client.write_eof()
    except ConnectionError:
        pass


def _implementing(plugins: tuple[Plugin, ...], hook: str) -> tuple[Plugin, ...]:
    base = getattr(Plugin, hook)
    return tuple(p for p in plugins if getattr(type(p), hook) is not base)


def _log_plugin_failure(plugin: Plugin, ex: Exchange) -> None:
    structlog.get_logger("gateway").exception("plugin_failed", plugin=plugin.name, request_id=ex.request_id)


__all__ = ["CLIENT_CLOSED", "Generation", "Pipeline", "UpstreamError"]
