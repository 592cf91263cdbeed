"""Redis and Redis Cluster: quota admission by one Lua script per call, shared by every replica.

This module is the one place where redis-py errors become ``StoreError``. Each call has a
deadline of ``store.timeout_ms``, and a circuit breaker skips Redis after a failure, so a dead
or frozen server costs at most one timeout per back-off instead of one per request. On a
cluster the quota scripts have a breaker per node, so a dead node costs only the teams whose
keys it holds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.config import Limits, StoreConfig
from gateway.errors import StoreError
from gateway.store.base import (
    MINUTE_MS,
    PER_DAY,
    PER_MONTH,
    RPM,
    TPM,
    Counter,
    Decision,
    Reservation,
    Store,
    counters,
)
from gateway.store.breaker import CircuitBreaker
from gateway.store.pipelined import Connections, Endpoint, ReplyError, Script

T = TypeVar("T")

_LIMIT_NAMES = frozenset({RPM, TPM, PER_DAY, PER_MONTH})

#: How long a reconciliation waits for its team's next admission or read to carry it, before
#: a call of its own sends it (with every other one owed by then).
RECONCILE_DELAY_S = 0.05

#: Calls in flight per store. Redis runs one command at a time, so more connections add no
#: throughput; and redis-py's cluster client fails (MaxConnectionsError) rather than wait for one.
MAX_IN_FLIGHT = 64


def window_script() -> str:
    return (resources.files("plugins.ratelimit") / "window.lua").read_text(encoding="utf-8")


def connect(url: str, timeout_s: float) -> redis.Redis | RedisCluster:
    """``redis://``, ``rediss://``, ``redis+cluster://`` or ``rediss+cluster://`` -> a client.

    redis-py's own retries are reduced to one immediate reconnect (a pooled connection that
    died with a restarted server); waiting longer is the breaker's job.
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 1),
    }
    parts = urlsplit(url)
    if parts.scheme.endswith("+cluster"):
        plain = urlunsplit(parts._replace(scheme=parts.scheme.removesuffix("+cluster")))
        return RedisCluster.from_url(plain, max_connections=MAX_IN_FLIGHT, **options)
    return redis.Redis.from_url(url, **options)


class RedisStore(Store):
    remote = True

    def __init__(self, config: StoreConfig, *, breaker: CircuitBreaker | None = None) -> None:
        super().__init__()
        self._timeout_s = config.timeout_ms / 1000
        self._client = connect(config.url, self._timeout_s)
        #: Guards a single server, and every call that is not a quota script.
        self._breaker = breaker or CircuitBreaker()
        #: On a cluster, a breaker per node for the quota scripts: a dead node costs only the
        #: teams whose keys it holds, not every team's enforcement.
        self._node_breakers: dict[tuple[str, int], CircuitBreaker] = {}
        # The hot path: admissions and reconciles over pipelined connections (see pipelined.py);
        # redis-py's registered copy serves a call the cluster redirected.
        self._connections = Connections(Endpoint.from_url(config.url), self._timeout_s)
        self._window_script = Script(window_script())
        self._window = self._client.register_script(self._window_script.source)
        # One round trip for many keys' remaining lives (keys share a hash tag on a cluster).
        self._ttls = self._client.register_script(_TTLS)
        # redis-py's cluster client discovers the slots lazily, and concurrent first calls race
        # inside it; one call at a time discovers them.
        #: Read per call; an isinstance check against redis-py's generic client class is slow.
        self._cluster = isinstance(self._client, RedisCluster)
        self._discovered = not self._cluster
        self._discovering = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        # Reservation ids must not collide across replicas: a random prefix per store, then a
        # counter (no random bytes to read per admission).
        self._member_prefix = os.urandom(6).hex()
        self._members = itertools.count(1)
        #: Reconciliations owed per scope, as the script's ARGV: sent with the scope's next
        #: admission or read (one script call per request instead of two), or after
        #: RECONCILE_DELAY_S by ``_send_owed``.
        self._owed: dict[str, list[str | int]] = {}
        self._owed_timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def _discover(self) -> None:
        async with self._discovering:
            if not self._discovered:
                assert isinstance(self._client, RedisCluster)
                await self._client.initialize()
                self._discovered = True

    async def _call(
        self,
        what: str,
        operation: Callable[[], Awaitable[T]],
        *,
        pooled: bool = True,
        breaker: CircuitBreaker | None = None,
    ) -> T:
        """``operation`` within the deadline, behind ``breaker`` (the store's by default), its
        errors as ``StoreError``. ``pooled``: it takes one of redis-py's pooled connections, so it
        waits for a slot; otherwise its pipelined connection bounds every call it makes."""
        breaker = breaker or self._breaker
        if not breaker.allow():
            raise self._failed(StoreError(f"store skipped ({what}): it failed recently, probing again soon"))
        try:
            if pooled:
                # Waiting for a slot counts against the deadline: an overloaded store is a slow one.
                async with asyncio.timeout(self._timeout_s):
                    if not self._discovered:
                        await self._discover()
                    async with self._in_flight:
                        result = await operation()
            else:
                result = await operation()
        except asyncio.CancelledError:
            breaker.abandoned()
            raise
        except Exception as exc:
            # Redis errors, socket errors, timeouts, and anything a client bug raises: the request
            # must get on_error's answer, never a 500 from inside redis-py.
            breaker.failed()
            reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"[:300]
            raise self._failed(StoreError(f"store {what} failed: {reason}")) from exc
        breaker.succeeded()
        return result

    async def _script(self, what: str, scope: str, args: list[str | int]) -> Any:
        """The window script on ``scope``'s keys, behind the breaker of the node that holds them."""
        prefix = f"rl:{{{scope}}}:"
        address: tuple[str, int] | None = None
        breaker: CircuitBreaker | None = None  # the store's
        if self._cluster:
            if not self._discovered:
                await self._call("discover", self._discover)
            node = cast(RedisCluster, self._client).get_node_from_key(prefix + "log")
            if node is not None:  # else a hole in the slot map: the store's breaker answers for it
                address = (node.host, int(node.port))
                breaker = self._node_breakers.get(address)
                if breaker is None:
                    breaker = self._node_breakers[address] = CircuitBreaker()
        return await self._call(what, lambda: self._run(prefix, args, address), pooled=False, breaker=breaker)

    async def _run(self, prefix: str, args: list[str | int], node: tuple[str, int] | None) -> Any:
        keys, argv = [prefix + "log", prefix + "w"], [prefix, *args]
        if self._cluster and node is None:
            raise ConnectionError(f"no cluster node serves the key {keys[0]!r}")
        try:
            connection = await self._connections.get(*node) if node else await self._connections.get()
            return await self._window_script.run(connection, keys, argv)
        except ReplyError as err:
            if err.code not in ("MOVED", "ASK"):
                raise
        # A slot moved: redis-py follows the redirect and refreshes the slot map the next call reads.
        async with asyncio.timeout(self._timeout_s), self._in_flight:
            return await self._window(keys=keys, args=argv)

    async def admit(
        self,
        scope: str,
        limits: Limits,
        tokens: int,
        *,
        window_ms: int = MINUTE_MS,
        now_ms: int | None = None,
    ) -> Decision:
        member = f"{self._member_prefix}{next(self._members):x}"
        args: list[str | int] = [
            "admit", member, tokens, window_ms, now_ms or 0,
            limits.rpm or 0, limits.tpm or 0, limits.tokens_per_day or 0, limits.tokens_per_month or 0,
            # Applied first; lost with the call if it fails, as a failed reconcile is.
            *self._owed.pop(scope, ()),
        ]  # fmt: skip
        reply = await self._script("admit", scope, args)
        admitted, refused_by, wait, now = int(reply[0]), _text(reply[1]), int(reply[2]), int(reply[3])
        state = _counters(limits, reply)
        if admitted:
            return Decision(True, now, state, Reservation(member, now, tokens))
        if refused_by not in _LIMIT_NAMES:
            raise self._failed(StoreError(f"store admit failed: unexpected reply {reply!r}"))
        return Decision(False, now, state, refused_by=refused_by, retry_after_ms=None if wait < 0 else wait)

    async def reconcile(self, scope: str, reservation: Reservation, actual_tokens: int) -> None:
        """Owed, not sent: the scope's next admission or read carries it, or ``_send_owed`` does
        within RECONCILE_DELAY_S. ``settle`` sends every one owed and waits."""
        r = reservation
        owed = self._owed.get(scope)
        if owed is None:
            owed = self._owed[scope] = []
        owed += (r.member, r.tokens, actual_tokens, r.at_ms)
        if self._owed_timer is None:
            self._owed_timer = asyncio.get_running_loop().call_later(RECONCILE_DELAY_S, self._send_owed)

    def _send_owed(self) -> None:
        self._owed_timer = None
        owed, self._owed = self._owed, {}
        for scope, args in owed.items():
            task = asyncio.ensure_future(self._reconcile_now(scope, args))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _reconcile_now(self, scope: str, owed: list[str | int]) -> None:
        args: list[str | int] = ["reconcile", *owed]
        try:
            await self._script("reconcile", scope, args)
        except StoreError:
            pass  # counted; the reservations stand until they leave the window

    async def settle(self) -> None:
        if self._owed_timer is not None:
            self._owed_timer.cancel()
        self._send_owed()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def read_usage(
        self, scope: str, limits: Limits, *, window_ms: int = MINUTE_MS, now_ms: int | None = None
    ) -> tuple[Counter, ...]:
        args: list[str | int] = ["peek", "", 0, window_ms, now_ms or 0, 0, 0, 0, 0, *self._owed.pop(scope, ())]
        return _counters(limits, await self._script("read", scope, args))

    async def get(self, key: str) -> str | None:
        value = await self._call("get", lambda: self._client.get(key))
        return None if value is None else _text(value)

    async def set(self, key: str, value: str, ttl_ms: int) -> None:
        await self._call("set", lambda: self._client.set(key, value, px=max(1, ttl_ms)))

    async def claim(self, key: str, ttl_ms: int) -> bool:
        return bool(await self._call("claim", lambda: self._client.set(key, "1", px=max(1, ttl_ms), nx=True)))

    async def delete(self, key: str) -> None:
        await self._call("delete", lambda: self._client.delete(key))

    async def remaining_ms(self, keys: Sequence[str]) -> list[int]:
        if not keys:
            return []
        reply = await self._call("remaining_ms", lambda: self._ttls(keys=list(keys)))
        return [max(0, int(ttl)) for ttl in reply]

    async def ping(self) -> bool:
        try:
            await self._call("ping", self._client.ping)
        except StoreError:
            return False
        return True

    async def close(self) -> None:
        await self.settle()
        self._connections.close()
        try:
            await self._client.aclose()
        except (RedisError, OSError) as exc:
            raise StoreError(f"store close failed: {type(exc).__name__}") from exc


_TTLS = """
local result = {}
for i, key in ipairs(KEYS) do result[i] = redis.call('PTTL', key) end
return result
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _counters(limits: Limits, reply: list[Any]) -> tuple[Counter, ...]:
    requests, window_reset, tokens, _, day, day_reset, month, month_reset = map(int, reply[4:12])
    return counters(
        limits,
        requests=requests,
        tokens=tokens,
        window_reset_ms=window_reset,
        day_tokens=day,
        day_reset_ms=day_reset,
        month_tokens=month,
        month_reset_ms=month_reset,
    )
