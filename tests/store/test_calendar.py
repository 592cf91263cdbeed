"""Daily and monthly quotas are calendar UTC: they roll over at midnight, whatever the clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.config import Limits
from gateway.store import Store
from gateway.store.calendar import buckets
from gateway.store.memory import MemoryStore


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("2026-11-30T23:59:59.900", "2026-12-01T00:00:00.100"),  # day and month
        ("2026-12-31T23:59:59.900", "2027-01-01T00:00:00.100"),  # and year
        ("2028-02-28T23:59:59.900", "2028-02-29T00:00:00.100"),  # a leap day: the day only
    ],
)
async def test_day_and_month_roll_over_at_utc_midnight(store: Store, scope: str, before: str, after: str) -> None:
    per_day = Limits(tokens_per_day=100)
    assert (await store.admit(scope, per_day, 100, now_ms=ms(before))).admitted
    refused = await store.admit(scope, per_day, 1, now_ms=ms(before) + 50)
    assert refused.refused_by == "tokens_per_day"
    # Capacity frees at midnight exactly: 50 ms after this refusal.
    assert refused.retry_after_ms == 50
    assert (await store.admit(scope, per_day, 100, now_ms=ms(after))).admitted


async def test_month_quota_rolls_over_on_the_first(store: Store, scope: str) -> None:
    per_month = Limits(tokens_per_month=1000, tokens_per_day=10_000)
    assert (await store.admit(scope, per_month, 1000, now_ms=ms("2026-11-01T00:00:00.000"))).admitted
    refused = await store.admit(scope, per_month, 1, now_ms=ms("2026-11-30T23:59:59.900"))
    assert (refused.refused_by, refused.retry_after_ms) == ("tokens_per_month", 100)
    assert (await store.admit(scope, per_month, 1000, now_ms=ms("2026-12-01T00:00:00.100"))).admitted


async def test_reconciliation_lands_in_the_bucket_of_the_admission(store: Store, scope: str) -> None:
    limits = Limits(tokens_per_day=1000)
    admitted = await store.admit(scope, limits, 500, now_ms=ms("2026-11-30T23:59:59.900"))
    assert admitted.reservation
    await store.admit(scope, limits, 10, now_ms=ms("2026-12-01T00:00:00.100"))
    await store.reconcile(scope, admitted.reservation, 200)
    [yesterday] = await store.read_usage(scope, limits, now_ms=ms("2026-11-30T23:59:59.950"))
    [today] = await store.read_usage(scope, limits, now_ms=ms("2026-12-01T00:00:00.200"))
    assert (yesterday.used, today.used) == (200, 10)


@pytest.mark.parametrize(
    "instant",
    [
        "1970-01-02T00:00:00.001",
        "2000-02-29T12:00:00.000",
        "2024-02-29T23:59:59.999",
        "2026-11-22T03:00:00.000",
        "2026-12-31T23:59:59.999",
        "2100-02-28T00:00:00.001",
        "2400-02-29T00:00:00.000",
    ],
)
async def test_every_store_computes_the_same_calendar(store: Store, scope: str, instant: str) -> None:
    """The Lua civil-date arithmetic agrees with Python's calendar, leap years included."""
    now = ms(instant)
    expected = buckets(now)
    counters = await store.read_usage(scope, Limits(tokens_per_day=1, tokens_per_month=1), now_ms=now)
    assert [c.reset_ms for c in counters] == [expected.day_end_ms - now, expected.month_end_ms - now]


async def test_memory_store_follows_its_injected_clock() -> None:
    clock = [ms("2026-11-30T23:59:59.900")]
    store = MemoryStore(clock=lambda: clock[0])
    limits = Limits(tokens_per_day=100, tokens_per_month=150)
    assert (await store.admit("research", limits, 100)).admitted
    refused = await store.admit("research", limits, 60)
    # Both quotas free at the same midnight; either may be named.
    assert refused.retry_after_ms == 100
    clock[0] = ms("2026-12-01T00:00:00.100")
    assert (await store.admit("research", limits, 100)).admitted
    assert not (await store.admit("research", limits, 1)).admitted
    # Old buckets are forgotten once a reconciliation can no longer reach them.
    clock[0] = ms("2026-12-05T00:00:00.000")
    assert (await store.admit("research", limits, 1)).admitted
    assert [c.used for c in await store.read_usage("research", limits)] == [1, 101]
