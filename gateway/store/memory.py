"""``memory://``: the quota algorithm in this process, for one worker and for tests.

The same rolling-window log and calendar counters as ``plugins/ratelimit/window.lua``. Each
method runs without awaiting, so on one event loop every admission is atomic, as the script is
in Redis.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.config import Limits
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
from gateway.store.calendar import DAY_MS, Buckets, buckets


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Scope:
    """One team's counters: the admissions in the window and the calendar totals.

    The window is an exact log, one admission per slot of two parallel ``array('q')`` (time,
    tokens): 16 bytes an admission instead of ~250 for tuples and a dict, so a team at thousands
    of requests a second holds a couple of MiB, not tens. A reservation's member is its sequence
    number, which locates its slot for reconciliation without a lookup table.
    """

    times: array[int] = field(default_factory=lambda: array("q"))
    weights: array[int] = field(default_factory=lambda: array("q"))
    #: Slots before ``head`` have left the window; they are dropped in bulk by ``_compact``.
    head: int = 0
    #: The sequence number of slot 0.
    base_seq: int = 0
    tokens: int = 0
    #: days since the epoch -> tokens; yyyymm -> tokens.
    days: dict[int, int] = field(default_factory=dict)
    months: dict[int, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.times) - self.head

    def time_of(self, index: int) -> int:
        """The admission time of the ``index``-th oldest admission in the window."""
        return self.times[self.head + index]

    def trim(self, now_ms: int, window_ms: int) -> None:
        cutoff = now_ms - window_ms
        times, weights, head, end = self.times, self.weights, self.head, len(self.times)
        while head < end and times[head] <= cutoff:
            self.tokens -= weights[head]
            head += 1
        self.head = head
        if head > 1024 and head * 2 > end:
            self._compact()

    def _compact(self) -> None:
        del self.times[: self.head]
        del self.weights[: self.head]
        self.base_seq += self.head
        self.head = 0

    def add(self, at_ms: int, tokens: int) -> int:
        """Log an admission; returns its sequence number. A clock that stepped back counts the
        admission at the newest time already logged, which keeps the log ordered and only ever
        keeps an admission in the window longer, never shorter."""
        if self.times and at_ms < self.times[-1]:
            at_ms = self.times[-1]
        seq = self.base_seq + len(self.times)
        self.times.append(at_ms)
        self.weights.append(tokens)
        self.tokens += tokens
        return seq

    def reweigh(self, seq: int, tokens: int) -> None:
        """Replace an admission's tokens, if it is still in the window."""
        slot = seq - self.base_seq
        if self.head <= slot < len(self.weights):
            self.tokens += tokens - self.weights[slot]
            self.weights[slot] = tokens

    def frees_at(self, needed: int, window_ms: int) -> int:
        """When the oldest admissions have left the window carrying at least ``needed`` tokens."""
        freed = 0
        for slot in range(self.head, len(self.times)):
            freed += self.weights[slot]
            if freed >= needed:
                return self.times[slot] + window_ms
        return (self.times[-1] if len(self) else 0) + window_ms

    def forget_old_buckets(self, now_ms: int) -> None:
        # Like the Redis keys, a bucket outlives its period by a day for late reconciliations.
        horizon = now_ms // DAY_MS - 1
        for day in [d for d in self.days if d < horizon]:
            del self.days[day]
        current = buckets(horizon * DAY_MS).month
        for month in [m for m in self.months if m < current]:
            del self.months[month]


class MemoryStore(Store):
    def __init__(self, clock: Callable[[], int] = wall_clock_ms) -> None:
        super().__init__()
        self._clock = clock
        self._scopes: dict[str, _Scope] = {}
        #: key -> (value, expiry ms)
        self._values: dict[str, tuple[str, int]] = {}
        self._sweep_at = 1024
        self._calendar = buckets(0)

    def _scope(self, name: str) -> _Scope:
        # Not setdefault(name, _Scope()): that would build (and drop) two arrays and two dicts
        # on every admission.
        s = self._scopes.get(name)
        if s is None:
            s = self._scopes[name] = _Scope()
        return s

    def _buckets(self, now_ms: int) -> Buckets:
        # Computed once a day, not once per request.
        if not self._calendar.holds(now_ms):
            self._calendar = buckets(now_ms)
        return self._calendar

    async def admit(
        self,
        scope: str,
        limits: Limits,
        tokens: int,
        *,
        window_ms: int = MINUTE_MS,
        now_ms: int | None = None,
    ) -> Decision:
        # The usual case, admitted, is decided in one pass; the waits are worked out only for a refusal.
        now = self._clock() if now_ms is None else now_ms
        s = self._scope(scope)
        s.trim(now, window_ms)
        cal = self._buckets(now)
        day, month = s.days.get(cal.day, 0), s.months.get(cal.month, 0)
        rpm, tpm, per_day, per_month = limits.rpm, limits.tpm, limits.tokens_per_day, limits.tokens_per_month
        in_window = len(s)
        if (
            (not rpm or in_window < rpm)
            and (not tpm or s.tokens + tokens <= tpm)
            and (not per_day or day + tokens <= per_day)
            and (not per_month or month + tokens <= per_month)
        ):
            reservation = Reservation(str(s.add(now, tokens)), now, tokens)
            if tokens:
                if cal.day not in s.days:  # a new day: older buckets may now be out of reach
                    s.forget_old_buckets(now)
                day = s.days[cal.day] = day + tokens
                month = s.months[cal.month] = month + tokens
            state = self._counters(s, limits, now, window_ms, cal=cal, day=day, month=month)
            return Decision(True, now, state, reservation)
        waits: list[tuple[str, int | None]] = []
        if rpm and in_window + 1 > rpm:
            waits.append((RPM, s.time_of(in_window - rpm) + window_ms - now))
        if tpm and s.tokens + tokens > tpm:
            fits = tokens <= tpm
            waits.append((TPM, s.frees_at(s.tokens + tokens - tpm, window_ms) - now if fits else None))
        if per_day and day + tokens > per_day:
            waits.append((PER_DAY, cal.day_end_ms - now if tokens <= per_day else None))
        if per_month and month + tokens > per_month:
            waits.append((PER_MONTH, cal.month_end_ms - now if tokens <= per_month else None))
        refused_by, wait = _slowest(waits)
        state = self._counters(s, limits, now, window_ms, cal=cal, day=day, month=month)
        return Decision(False, now, state, refused_by=refused_by, retry_after_ms=wait)

    async def reconcile(self, scope: str, reservation: Reservation, actual_tokens: int) -> None:
        s = self._scopes.get(scope)
        if s is None:
            return
        s.reweigh(int(reservation.member), actual_tokens)
        delta = actual_tokens - reservation.tokens
        at = reservation.at_ms
        # Charged on an earlier day: its buckets, without replacing the current day's.
        cal = self._calendar if self._calendar.holds(at) else buckets(at)
        if cal.day in s.days:
            s.days[cal.day] += delta
        if cal.month in s.months:
            s.months[cal.month] += delta

    async def read_usage(
        self, scope: str, limits: Limits, *, window_ms: int = MINUTE_MS, now_ms: int | None = None
    ) -> tuple[Counter, ...]:
        now = self._clock() if now_ms is None else now_ms
        s = self._scope(scope)
        s.trim(now, window_ms)
        cal = self._buckets(now)
        day, month = s.days.get(cal.day, 0), s.months.get(cal.month, 0)
        return self._counters(s, limits, now, window_ms, cal=cal, day=day, month=month)

    @staticmethod
    def _counters(
        s: _Scope, limits: Limits, now: int, window_ms: int, *, cal: Buckets, day: int, month: int
    ) -> tuple[Counter, ...]:
        requests = len(s)
        return counters(
            limits,
            requests=requests,
            tokens=s.tokens,
            window_reset_ms=(s.time_of(0) + window_ms - now) if requests else window_ms,
            day_tokens=day,
            day_reset_ms=cal.day_end_ms - now,
            month_tokens=month,
            month_reset_ms=cal.month_end_ms - now,
        )

    async def get(self, key: str) -> str | None:
        item = self._values.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            del self._values[key]
            return None
        return item[0]

    async def set(self, key: str, value: str, ttl_ms: int) -> None:
        now = self._clock()
        self._values[key] = (value, now + ttl_ms)
        if len(self._values) >= self._sweep_at:  # amortised: expired values never pile up
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
            self._sweep_at = max(1024, 2 * len(self._values))

    async def claim(self, key: str, ttl_ms: int) -> bool:
        if await self.get(key) is not None:
            return False
        await self.set(key, "1", ttl_ms)
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def remaining_ms(self, keys: Sequence[str]) -> list[int]:
        now = self._clock()
        result = []
        for key in keys:
            item = self._values.get(key)
            result.append(max(0, item[1] - now) if item is not None else 0)
        return result

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._scopes.clear()
        self._values.clear()


def _slowest(waits: list[tuple[str, int | None]]) -> tuple[str, int | None]:
    """Every limit must pass, so a retry fits once the slowest frees; never, if one never does."""
    never = [name for name, wait in waits if wait is None]
    if never:
        return never[0], None
    name, wait = max(waits, key=lambda w: w[1] or 0)
    return name, wait
