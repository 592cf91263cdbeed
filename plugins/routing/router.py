"""The routing plugin: which deployments a request may try, in what order, and what each
attempt teaches about the deployment's health."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import Config, Deployment
from gateway.errors import GatewayError, RateLimited, ServiceUnavailable, StoreError
from gateway.exchange import Exchange
from gateway.plugin import Attempt, Plugin
from gateway.store import Reservation, Store
from plugins.ratelimit.reservation import tokens_to_reserve
from plugins.routing.choice import by_priority, least_utilized, weighted
from plugins.routing.health import DeploymentHealth

#: Statuses that say the deployment itself is unwell (429 is capacity, handled as a cooldown).
FAILURE_STATUSES = frozenset({408, 500, 502, 503, 504})
#: How long a half-open probe holds its claim at most, whatever the deployment's timeouts.
PROBE_CLAIM_CAP_S = 60.0


@dataclass(slots=True)
class _Capacity:
    """A reservation against a deployment's known capacity (``deployments[].limits``)."""

    deployment: str
    reservation: Reservation


class Router(Plugin):
    name = "routing"

    def __init__(
        self,
        config: Config,
        store: Store | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_cooldown: Callable[[str, float], None] | None = None,
    ) -> None:
        """``on_cooldown(deployment, seconds)`` hears every change of a deployment's wait
        (``gateway_deployment_cooldown``); 0 means available again."""
        self._config = config
        self._settings = config.routing
        self._store = store
        self._rng = rng or random.Random()
        self._clock = clock
        self.health = DeploymentHealth(store, config.deployments, config.routing, clock, on_cooldown)
        #: Consecutive failures per deployment seen by this replica.
        self._failures: dict[str, int] = {}
        #: The upstream's last reported headroom per deployment (``least-utilized``).
        self._headroom: dict[str, float] = {}

    async def start(self) -> None:
        await self.health.refresh()
        self.health.start()

    async def close(self) -> None:
        await self.health.stop()

    # -- before the upstream --------------------------------------------------------------------

    def plan(self, exchange: Exchange) -> list[Deployment]:
        """The deployments to try, in order. Raises when none of them may be tried now."""
        if exchange.pinned is not None:
            pool = [exchange.pinned]  # pinned: exactly that deployment, no failover
        else:
            assert exchange.model is not None
            pool = list(self._config.pool(exchange.model))
        now = self._clock()
        usable = [d for d in pool if self.health.wait_s(d.name, now) is None]
        if not usable:
            raise self.unavailable(exchange, pool)
        ordered: list[Deployment] = []
        for group in by_priority(usable):
            if self._settings.strategy == "least-utilized":
                ordered.extend(least_utilized(group, self._rng, self._headroom))
            else:
                ordered.extend(weighted(group, self._rng))
        return ordered[: self._settings.max_attempts]

    async def acquire(self, exchange: Exchange, deployment: Deployment) -> bool:
        """Whether this attempt may go to ``deployment`` now (a half-open probe, known capacity)."""
        now = self._clock()
        if self.health.wait_s(deployment.name, now) is not None:
            return False  # cooled or opened while earlier attempts ran
        if self.health.half_open(deployment.name, now):
            claim_s = min(deployment.timeouts.first_byte_s, PROBE_CLAIM_CAP_S)
            if not await self.health.claim_probe(deployment.name, claim_s):
                return False
        if deployment.limits.empty or self._store is None:
            return True
        tokens = exchange.reserved_tokens or tokens_to_reserve(exchange, exchange.config.ratelimit.default_max_tokens)
        try:
            decision = await self._store.admit(f"deployment:{deployment.name}", deployment.limits, tokens)
        except StoreError:
            return True  # capacity is advisory: the upstream's own 429 still protects it
        if not decision.admitted:
            await self.health.cool(deployment.name, (decision.retry_after_ms or 1000) / 1000)
            return False
        assert decision.reservation is not None
        exchange.state.setdefault(self.name, []).append(_Capacity(deployment.name, decision.reservation))
        return True

    def unavailable(self, exchange: Exchange, pool: list[Deployment] | None = None) -> GatewayError:
        """The answer when no deployment of the pool may be tried: 429 while cooling, else 503."""
        if pool is None:
            pool = [exchange.pinned] if exchange.pinned else list(self._config.pool(exchange.model or ""))
        now = self._clock()
        waits = [w for d in pool if (w := self.health.wait_s(d.name, now)) is not None]
        cooling = [seconds for kind, seconds in waits if kind == "cooling"]
        if cooling:
            retry_ms = max(1, int(min(cooling) * 1000))
            return RateLimited(
                f"Every deployment of '{exchange.model}' is at its upstream rate limit. "
                f"Retry after {-(-retry_ms // 1000)} seconds.",
                limit="pool",
                retry_after_ms=retry_ms,
            )
        retry_s = max(1, int(min((seconds for _, seconds in waits), default=1) + 0.999))
        return ServiceUnavailable(
            f"Every deployment of '{exchange.model}' is failing; the gateway is keeping traffic away from them. "
            f"Retry after {retry_s} seconds.",
            headers={"retry-after": str(retry_s)},
        )

    # -- after each attempt ---------------------------------------------------------------------

    async def attempted(self, exchange: Exchange, attempt: Attempt) -> None:
        name = attempt.deployment.name
        if attempt.remaining_tokens is not None or attempt.remaining_requests is not None:
            headroom = attempt.remaining_tokens if attempt.remaining_tokens is not None else attempt.remaining_requests
            self._headroom[name] = float(headroom or 0)
        if attempt.status == 429:
            seconds = attempt.retry_after_ms / 1000 if attempt.retry_after_ms else self._settings.cooldown_s
            await self.health.cool(name, seconds)
            return
        failed = attempt.status == 0 or attempt.status in FAILURE_STATUSES
        if failed:
            count = self._failures.get(name, 0) + 1
            self._failures[name] = count
            probing = self.health.half_open(name, self._clock())
            if probing or count >= self._settings.breaker_failures:
                self._failures[name] = 0
                await self.health.open(name)
        elif attempt.status < 400:
            self._failures.pop(name, None)
            if self.health.views[name].tripped_until:
                await self.health.close(name)

    async def completed(self, exchange: Exchange) -> None:
        held: list[_Capacity] = exchange.state.pop(self.name, [])
        if not held or self._store is None:
            return
        served = exchange.deployment.name if exchange.deployment is not None else None
        for capacity in held:
            # Only the deployment that answered used tokens; earlier attempts are released.
            actual = exchange.usage.total if capacity.deployment == served and exchange.usage is not None else 0
            try:
                await self._store.reconcile(f"deployment:{capacity.deployment}", capacity.reservation, actual)
            except StoreError:
                pass  # the reservation then stands until it leaves the window
