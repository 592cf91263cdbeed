"""The upstream HTTP client: one pooled session, three timeouts, and the aiohttp error boundary.

Every aiohttp exception raised while talking to an upstream is translated here, once, into
``UpstreamUnavailable`` (with a ``reason`` routing and metrics can use). Nothing above this
module imports aiohttp's client errors.

Timeouts: ``connect_s`` for the TCP/TLS connect, ``first_byte_s`` until the response headers,
``idle_s`` between two reads of the body. There is no total timeout, so a live stream may run
as long as it keeps sending.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from types import TracebackType

import aiohttp
from multidict import CIMultiDictProxy

from gateway.config import Timeouts
from gateway.errors import UpstreamUnavailable
from plugins.dialects.base import OutboundRequest

#: Sent to every upstream instead of aiohttp's "Python/x aiohttp/y": names the product, not its
#: stack. Set on the request rather than skipped as an auto header, which costs a header copy per call.
USER_AGENT = "llm-gateway"
#: Reads of a streamed body: large enough to take a burst in one go, small enough to stay flat.
READ_SIZE = 64 * 1024


@functools.lru_cache(maxsize=256)
def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    # aiohttp's sock_read restarts with every read, so it can stand for the first-byte deadline
    # (it then also bounds gaps between body reads, which the idle timer already keeps shorter).
    # When the first byte may take less than an idle gap, a timer of our own is needed instead.
    sock_read = timeouts.first_byte_s if _first_byte_by_sock_read(timeouts) else None
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=timeouts.connect_s, sock_read=sock_read)


def _first_byte_by_sock_read(timeouts: Timeouts) -> bool:
    return timeouts.first_byte_s >= timeouts.idle_s


class UpstreamResponse:
    """An upstream response whose headers have arrived; the body is read with the idle timeout."""

    __slots__ = ("_idle_s", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, idle_s: float) -> None:
        self._response = response
        self._idle_s = idle_s
        self.status = response.status
        self.headers: CIMultiDictProxy[str] = response.headers

    async def read(self) -> bytes:
        try:
            if self._response.content.is_eof():
                return await self._response.read()  # all here already: no timer needed
            async with asyncio.timeout(self._idle_s):
                return await self._response.read()
        except TimeoutError as exc:
            raise UpstreamUnavailable("The upstream stopped sending its response.", reason="idle_timeout") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"The upstream response broke off: {type(exc).__name__}.", reason="broken"
            ) from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; each read waits at most ``idle_s``."""
        content = self._response.content
        try:
            while True:
                async with asyncio.timeout(self._idle_s):
                    chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except TimeoutError as exc:
            raise UpstreamUnavailable("The upstream went quiet mid-stream.", reason="idle_timeout") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"The upstream stream broke off: {type(exc).__name__}.", reason="broken") from exc

    def close(self) -> None:
        """Drop the connection: used when the client left, so the upstream stops generating."""
        self._response.close()

    def release(self) -> None:
        self._response.release()

    async def __aenter__(self) -> UpstreamResponse:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None and self._response.content.at_eof():
            self.release()
        else:
            self.close()


class UpstreamClient:
    """Sends rendered requests to deployments over one connection pool."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    @classmethod
    def create(cls) -> UpstreamClient:
        connector = aiohttp.TCPConnector(
            limit=0,  # concurrency is bounded by quotas and the clients, not by the pool
            limit_per_host=0,
            keepalive_timeout=30,
            ttl_dns_cache=60,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            # One session serves every team: a cookie a deployment's load balancer sets must not
            # ride along on another team's request (and filtering a jar costs every request).
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return cls(session)

    async def close(self) -> None:
        await self._session.close()

    async def send(self, request: OutboundRequest, timeouts: Timeouts) -> UpstreamResponse:
        request.headers["User-Agent"] = USER_AGENT
        post = self._session.post(
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=_client_timeout(timeouts),
            allow_redirects=False,
        )
        try:
            if _first_byte_by_sock_read(timeouts):
                response = await post
            else:
                async with asyncio.timeout(timeouts.first_byte_s):
                    response = await post
        except TimeoutError as exc:
            raise UpstreamUnavailable(
                f"The upstream sent no response within {timeouts.first_byte_s:g} s.", reason="timeout", status=504
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnavailable(
                f"Cannot connect to the upstream: {exc.os_error.strerror or exc}.", reason="connect"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(
                f"The upstream connection failed: {type(exc).__name__}.", reason="connect"
            ) from exc
        return UpstreamResponse(response, timeouts.idle_s)
