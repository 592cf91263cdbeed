"""Pipelined Redis connections for the quota hot path: one EVALSHA per admission (which also
carries the reconciliations owed).

redis-py's asyncio client spends about 55 µs of CPU per command under concurrency (a pooled
connection, locks, a retry wrapper and an observability hook per call); a gateway at a few
thousand requests a second pays that for every request. Here every command issued during one
event-loop tick goes out in a single write, and replies are parsed by hiredis and matched to
their callers in order: about 8 µs per command.

This speaks only what the hot path needs: RESP2 commands of bulk strings, AUTH and SELECT, TLS.
redis-py keeps everything else (cluster topology, routing state, health checks) and takes over a
call whenever the cluster answers MOVED or ASK. Errors here are plain ``ConnectionError`` and
``ScriptError``; ``gateway.store.redis`` translates them with the rest at its one boundary.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

Arg = str | int | bytes


class ReplyError(Exception):
    """Redis answered with an error reply (NOSCRIPT, MOVED, a script's own error, …)."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


#: One command as a RESP array of bulk strings (integers in decimal, as redis-py sends them).
#: hiredis's packer, in C: a third of the cost of building it in Python. (Its stub declares a
#: one-element tuple and no return type.)
encode: Callable[[tuple[Arg, ...]], bytes] = hiredis.pack_command  # type: ignore[assignment]


class PipelinedConnection(asyncio.Protocol):
    """One connection; commands are written once per loop tick and replies resolve in order.

    With ``timeout_s``, a call whose reply has not come within it fails with ``TimeoutError``.
    Replies come in order, so the oldest call waiting is the first to expire: one timer, set at
    its deadline, serves every call (an ``asyncio.timeout`` per call cost a dozen calls).
    """

    def __init__(self, timeout_s: float | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader()
        self._waiting: deque[asyncio.Future[object]] = deque()
        #: Each waiting call's deadline (loop time), in the same order.
        self._deadlines: deque[float] = deque()
        self._timeout_s = timeout_s if timeout_s is not None else math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._pending: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._lost: BaseException | None = None

    @property
    def usable(self) -> bool:
        return self._transport is not None and self._lost is None

    def call(self, *args: Arg) -> asyncio.Future[object]:
        """The reply of one command. A caller that stops waiting (a timeout) leaves its slot in
        the queue, so the replies after it still reach their own callers."""
        future: asyncio.Future[object] = self._loop.create_future()
        if not self.usable:
            future.set_exception(ConnectionError(f"redis connection lost: {self._lost or 'not open'}"))
            return future
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(encode(args))
        self._waiting.append(future)
        deadline = self._loop.time() + self._timeout_s
        self._deadlines.append(deadline)
        if self._timer is None and deadline != math.inf:
            self._timer = self._loop.call_at(deadline, self._expire)
        return future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _expire(self) -> None:
        """Fail the calls past their deadline; their replies, if they come, are dropped."""
        self._timer = None
        now = self._loop.time()
        for future, deadline in zip(self._waiting, self._deadlines, strict=True):
            if deadline > now:
                self._timer = self._loop.call_at(deadline, self._expire)
                return
            if not future.done():
                future.set_exception(TimeoutError("redis did not answer in time"))

    def _flush(self) -> None:
        if self._transport is not None and self._pending and self._lost is None:
            self._transport.write(b"".join(self._pending))
        self._pending.clear()

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                future = self._waiting.popleft()
                self._deadlines.popleft()
                if future.done():  # its caller gave up; the reply still had to be consumed
                    continue
                if isinstance(reply, hiredis.ReplyError):
                    future.set_exception(ReplyError(str(reply)))
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:  # garbage, or a reply nobody asked for
            self._fail(ConnectionError(f"redis protocol error: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"redis connection lost: {exc or 'closed by the server'}"))

    def _fail(self, exc: ConnectionError) -> None:
        self._lost = self._lost or exc
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(exc)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How to reach and log in to the Redis servers named by a ``store.url``."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        path = parts.path.strip("/")
        tls = None
        if parts.scheme.startswith("rediss"):
            ca_certs = query.get("ssl_ca_certs")
            tls = ssl.create_default_context(cafile=ca_certs[0] if ca_certs else None)
            if (query.get("ssl_cert_reqs") or [""])[0].lower() in {"none", "cert_none"}:
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
        # As redis-py reads them: the query's username, password and db win over the URL's own.
        username = (query.get("username") or [unquote(parts.username or "")])[0]
        password = (query.get("password") or [unquote(parts.password or "")])[0]
        db = (query.get("db") or [path])[0] or "0"
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            db=int(db) if db.isdigit() else 0,
            username=username or None,
            password=password or None,
            tls=tls,
        )

    async def open(self, host: str, port: int, timeout_s: float | None = None) -> PipelinedConnection:
        """A logged-in connection whose calls fail after ``timeout_s`` without a reply."""
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: PipelinedConnection(timeout_s), host, port, ssl=self.tls, server_hostname=host if self.tls else None
        )
        try:
            if self.password is not None:
                auth = (self.username, self.password) if self.username else (self.password,)
                await conn.call("AUTH", *auth)
            if self.db:
                await conn.call("SELECT", self.db)
        except BaseException:
            conn.close()
            raise
        return conn


class Script:
    """A Lua script called by its SHA1, loaded again when the server has lost it (NOSCRIPT)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def run(self, conn: PipelinedConnection, keys: Sequence[Arg], args: Sequence[Arg]) -> object:
        try:
            return await conn.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except ReplyError as err:
            if err.code != "NOSCRIPT":
                raise
        # After a restart, a failover or SCRIPT FLUSH.
        await conn.call("SCRIPT", "LOAD", self.source)
        return await conn.call("EVALSHA", self.sha, len(keys), *keys, *args)


class Connections:
    """One pipelined connection per Redis server, opened on first use and again after a loss.

    With ``timeout_s``, opening one (connect, AUTH, SELECT) and each call on it are bounded by it.
    """

    def __init__(self, endpoint: Endpoint, timeout_s: float | None = None) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._open: dict[tuple[str, int], asyncio.Task[PipelinedConnection]] = {}

    async def get(self, host: str | None = None, port: int | None = None) -> PipelinedConnection:
        address = (host or self._endpoint.host, port or self._endpoint.port)
        task = self._open.get(address)
        if task is not None and task.done() and not task.cancelled() and task.exception() is None:
            conn = task.result()
            if conn.usable:  # the usual case: no await, no shield
                return conn
            task = None  # lost: the next call opens a fresh one
        elif task is not None and task.done():
            task = None  # failed to open: try again
        if task is None:
            # A task, so concurrent callers share one connect and a caller's timeout cannot cut it.
            task = asyncio.ensure_future(self._endpoint.open(*address, self._timeout_s))
            task.add_done_callback(_consume_exception)
            self._open[address] = task
        async with asyncio.timeout(self._timeout_s):
            return await asyncio.shield(task)

    def close(self) -> None:
        for task in self._open.values():
            if task.done() and not task.cancelled() and task.exception() is None:
                task.result().close()
            else:
                task.cancel()
        self._open.clear()


def _consume_exception(task: asyncio.Task[PipelinedConnection]) -> None:
    # Every waiter sees the failure; this keeps asyncio from also logging it as never retrieved.
    if not task.cancelled():
        task.exception()
