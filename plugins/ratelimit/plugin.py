"""Per-team quotas: ``rpm``, ``tpm``, ``tokens_per_day`` and ``tokens_per_month``.

``admit`` reserves one request and the request's estimated tokens in the store, atomically
against every limit of the team, or refuses with the limit that was hit and when a retry fits.
``completed`` replaces the reserved tokens with the actual usage. Settings are read from the
exchange's own config, so a reload applies to the next request.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import Team
from gateway.errors import RateLimited, StoreError, StoreUnavailable
from gateway.exchange import Exchange
from gateway.plugin import Plugin
from gateway.store import MINUTE_MS, Decision, Reservation, Store
from gateway.store.base import PER_DAY, PER_MONTH, RPM, TPM
from plugins.ratelimit.headers import rate_limit_headers
from plugins.ratelimit.reservation import tokens_to_reserve

_UNITS = {
    RPM: "requests per minute",
    TPM: "tokens per minute",
    PER_DAY: "tokens per UTC day",
    PER_MONTH: "tokens per UTC month",
}


class RateLimitPlugin(Plugin):
    name = "ratelimit"

    def __init__(
        self,
        store: Store,
        *,
        window_ms: int = MINUTE_MS,
        on_usage: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """``store`` is shared and owned by the app; ``window_ms`` is shorter only in tests.

        ``on_usage(team, limit, ratio)`` hears each admission's share of every limit in use
        (``gateway_quota_usage_ratio``)."""
        self.store = store
        self.window_ms = window_ms
        self._on_usage = on_usage

    async def close(self) -> None:
        await self.reconciled()

    async def reconciled(self) -> None:
        """Wait until every reconciliation has reached the store (a Redis store defers them to
        the team's next call, or a moment later)."""
        await self.store.settle()

    async def admit(self, exchange: Exchange) -> None:
        team = exchange.team
        if team is None or team.limits.empty:
            return  # nothing to enforce: no round trip
        tokens = tokens_to_reserve(exchange, exchange.config.ratelimit.default_max_tokens)
        exchange.reserved_tokens = tokens
        try:
            decision = await self.store.admit(team.name, team.limits, tokens, window_ms=self.window_ms)
        except StoreError as exc:
            # Counted by the store (gateway_store_errors_total); on_error decides the answer.
            if exchange.config.store.on_error == "closed":
                raise StoreUnavailable(
                    "The quota store is unavailable, so the request was not admitted. Retry shortly."
                ) from exc
            return
        headers = rate_limit_headers(decision.counters)
        if self._on_usage is not None:
            for counter in decision.counters:
                self._on_usage(team.name, counter.name, counter.used / counter.limit)
        if decision.admitted:
            exchange.state[self.name] = decision.reservation
            exchange.response_headers.update(headers)
            return
        error = refusal(team, decision, tokens, self.window_ms)
        error.headers.update(headers)
        raise error

    async def completed(self, exchange: Exchange) -> None:
        reservation: Reservation | None = exchange.state.pop(self.name, None)
        if reservation is None or exchange.team is None:
            return
        # No usage means nothing was served: release the tokens (the request still counts).
        actual = exchange.usage.total if exchange.usage is not None else 0
        if actual == reservation.tokens:
            return
        try:
            # No round trip for the request to wait for: a Redis store sends it with the team's
            # next admission.
            await self.store.reconcile(exchange.team.name, reservation, actual)
        except StoreError:
            pass  # counted by the store; the reservation then stands until it leaves the window


def refusal(team: Team, decision: Decision, tokens: int, window_ms: int) -> RateLimited:
    limit = decision.refused_by or RPM
    value = next((c for c in decision.counters if c.name == limit), None)
    bound = f"its {limit} limit of {value.limit if value else '?'} {_UNITS[limit]}"
    kind = "requests" if limit == RPM else "tokens"
    wait = decision.retry_after_ms
    if wait is None:
        # Larger than the limit itself: no wait helps. Retry-After is the limit's full period.
        wait = window_ms if limit in (RPM, TPM) else (value.reset_ms if value else window_ms)
        message = (
            f"Team '{team.name}' cannot be admitted: this request reserves {tokens} tokens "
            f"(prompt estimate plus max_tokens), more than {bound}. Lower max_tokens or the prompt."
        )
    else:
        message = f"Team '{team.name}' exceeded {bound}. Retry after {_seconds(wait)}."
    return RateLimited(message, limit=limit, retry_after_ms=wait, type=kind)


def _seconds(ms: int) -> str:
    seconds = max(1, -(-ms // 1000))
    return "1 second" if seconds == 1 else f"{seconds} seconds"
