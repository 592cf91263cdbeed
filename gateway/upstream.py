"""The upstream client: pooled HTTP/1.1 connections, three timeouts, and the error boundary.

Every error raised while talking to an upstream is translated here, once, into
``UpstreamUnavailable`` (with a ``reason`` routing and metrics can use), or into
``OutOfDescriptors`` when the gateway itself has no descriptor for a connection (which is not the
deployment's failure). Nothing above this module sees socket, TLS or parser errors.

Timeouts: ``connect_s`` for the DNS lookup and TCP/TLS connect (through an egress proxy, its
answer to CONNECT too), ``first_byte_s`` until the response headers, ``idle_s`` between two
arrivals of body bytes. There is no total timeout, so a live stream may run as long as it keeps
sending.
"""

from __future__ import annotations

import asyncio
import errno
from types import TracebackType

import structlog
from multidict import CIMultiDictProxy

from gateway.config import Timeouts
from gateway.errors import OutOfDescriptors, UpstreamUnavailable
from gateway.http1 import BodyTooLarge, Origin, Pool, ProtocolError, ProxyError, Response, encode_request
from plugins.dialects.base import OutboundRequest

#: Sent to every upstream: names the product, not its stack.
USER_AGENT = "llm-gateway"

log = structlog.get_logger("gateway")


class _Unreachable(Exception):
    """No connection could be made (the cause is chained): told apart from a failed answer."""


class UpstreamResponse:
    """An upstream response whose headers have arrived; the body is read with the idle timeout."""

    __slots__ = ("_pool", "_response", "headers", "status")

    def __init__(self, pool: Pool, response: Response) -> None:
        self._pool = pool
        self._response = response
        self.status = response.status
        self.headers: CIMultiDictProxy[str] = response.headers

    async def read(self, limit: int) -> bytes:
        """The whole body, refused past ``limit`` bytes (``max_response_bytes``)."""
        try:
            return await self._response.read(limit)
        except BodyTooLarge as exc:
            raise UpstreamUnavailable(
                f"The upstream's answer is larger than max_response_bytes ({exc.limit} bytes).", reason="too_large"
            ) from exc
        except TimeoutError as exc:
            raise UpstreamUnavailable("The upstream stopped sending its response.", reason="idle_timeout") from exc
        except (OSError, ProtocolError) as exc:
            raise UpstreamUnavailable(f"The upstream response broke off: {_describe(exc)}.", reason="broken") from exc

    async def readany(self) -> bytes:
        """What of the body has arrived, waiting at most ``idle_s`` for a byte; ``b""`` at its end.
        (A loop over this, not an async generator: each of those is registered with the loop.)"""
        try:
            return await self._response.readany()
        except TimeoutError as exc:
            raise UpstreamUnavailable("The upstream went quiet mid-stream.", reason="idle_timeout") from exc
        except (OSError, ProtocolError) as exc:
            raise UpstreamUnavailable(f"The upstream stream broke off: {_describe(exc)}.", reason="broken") from exc

    def at_eof(self) -> bool:
        """The whole body has arrived and been read."""
        return self._response.at_eof()

    def ready(self) -> bool:
        """Something of the body (or its end) has arrived: ``readany`` would not wait."""
        return self._response.ready()

    def close(self) -> None:
        """Drop the connection: used when the client left, so the upstream stops generating."""
        self._pool.discard(self._response.connection)

    def release(self) -> None:
        """Return the connection to the pool (it is closed instead unless the body was read whole)."""
        self._pool.release(self._response.connection)

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.release()  # which closes the connection instead unless the body was read whole
        else:
            self.close()


class UpstreamClient:
    """Sends rendered requests to deployments over one connection pool."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @classmethod
    def create(cls) -> UpstreamClient:
        """A client for this process; the egress proxy settings are read from the environment now."""
        pool = Pool(asyncio.get_running_loop())
        proxies = pool.proxies.summary()
        if proxies:
            log.info("egress_proxy", **proxies)
        return cls(pool)

    async def close(self) -> None:
        self._pool.close()

    async def send(self, request: OutboundRequest, timeouts: Timeouts) -> UpstreamResponse:
        request.headers["User-Agent"] = USER_AGENT
        # Without it any coding is acceptable (RFC 9110 §12.5.3); relayed bytes are not re-encoded.
        request.headers["Accept-Encoding"] = "identity"
        try:
            origin, head = self._pool.route(request.url)
            data = encode_request(head, request.headers, request.body)
        except ValueError as exc:
            raise UpstreamUnavailable(f"The request cannot be sent upstream: {exc}.", reason="connect") from exc
        try:
            response = await self._answer(origin, data, timeouts)
        except _Unreachable as exc:
            cause = exc.__cause__
            if _out_of_descriptors(cause):
                raise OutOfDescriptors(
                    "The gateway has no file descriptor free for an upstream connection; retry shortly.",
                    headers={"retry-after": "1"},
                ) from cause
            if isinstance(cause, TimeoutError):
                through = " through the egress proxy" if origin.proxy is not None else ""
                message = f"Cannot connect to the upstream{through} within {timeouts.connect_s:g} s."
            else:
                message = f"Cannot connect to the upstream: {_describe(cause or exc)}."
            raise UpstreamUnavailable(message, reason="connect") from cause
        except TimeoutError as exc:
            raise UpstreamUnavailable(
                f"The upstream sent no response within {timeouts.first_byte_s:g} s.", reason="timeout", status=504
            ) from exc
        except (OSError, ProtocolError) as exc:
            raise UpstreamUnavailable(f"The upstream connection failed: {_describe(exc)}.", reason="connect") from exc
        return UpstreamResponse(self._pool, response)

    async def _answer(self, origin: Origin, data: bytes, timeouts: Timeouts) -> Response:
        """Send ``data`` and wait for the answer's headers.

        A kept-alive connection the upstream closes just as it is reused (its keep-alive timeout
        ran out while the request was on its way: nothing comes back, the connection drops) is
        not the deployment failing. The request is sent once more on a new connection, so the
        caller sees no error and routing counts no failure. The failover to another deployment
        that this error would otherwise cause re-sends the request all the same.
        """
        pool = self._pool
        for fresh in (False, True):
            try:
                conn = await pool.acquire(origin, timeouts.connect_s, new=fresh)
            except (TimeoutError, OSError) as exc:
                raise _Unreachable() from exc
            response = conn.send(data)
            response.idle_s = timeouts.idle_s
            try:
                await response.started(timeouts.first_byte_s)
                return response
            except ProxyError as exc:  # an http origin's proxy refused to pass the request on
                pool.discard(conn)
                raise _Unreachable() from exc
            except ConnectionError:
                pool.discard(conn)
                if fresh or not conn.reused or conn.answered:
                    raise
            except BaseException:
                pool.discard(conn)  # a timeout, a bad answer, or the client left before the upstream answered
                raise
        raise AssertionError("unreachable")


def _out_of_descriptors(exc: BaseException | None) -> bool:
    """EMFILE or ENFILE anywhere in the chain (an egress proxy's error wraps the OS's)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
            return True
        exc = exc.__cause__
    return False


def _describe(exc: BaseException) -> str:
    """What went wrong, for an error body: the OS's words where there are some, never an address."""
    if isinstance(exc, ProxyError):
        # The gateway's own words (never the proxy URL: it may hold a password), then the OS's
        # for why the proxy could not be reached.
        cause = exc.__cause__
        return f"{exc} ({_describe(cause)})" if cause is not None else str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
