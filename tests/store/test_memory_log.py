"""memory://'s window log: compact, and still exact after old admissions are dropped in bulk."""

from __future__ import annotations

import tracemalloc

from gateway.config import Limits
from gateway.store import MemoryStore
from gateway.store.base import TPM

T0 = 1_790_000_000_000
WINDOW = 1000
LIMITS = Limits(rpm=1_000_000, tpm=10_000_000)


async def test_reconcile_reaches_its_admission_after_older_ones_left_the_window() -> None:
    store = MemoryStore()
    # 5,000 admissions over 5 windows: thousands leave the window and are compacted away.
    for i in range(5000):
        decision = await store.admit("team", LIMITS, 10, window_ms=WINDOW, now_ms=T0 + i)
    assert decision.reservation is not None
    await store.reconcile("team", decision.reservation, 250)
    counters = {c.name: c for c in await store.read_usage("team", LIMITS, window_ms=WINDOW, now_ms=T0 + 4999)}
    # The last WINDOW ms hold 1,000 admissions: 999 of 10 tokens and the reconciled one of 250.
    assert counters[TPM].used == 999 * 10 + 250
    # A reservation that has left the window changes nothing in it.
    late = await store.admit("team", LIMITS, 10, window_ms=WINDOW, now_ms=T0 + 5000)
    assert late.reservation is not None
    await store.reconcile("team", late.reservation, 10)
    old = (await store.admit("other", LIMITS, 10, window_ms=WINDOW, now_ms=T0)).reservation
    assert old is not None
    await store.admit("other", LIMITS, 10, window_ms=WINDOW, now_ms=T0 + 3 * WINDOW)
    await store.reconcile("other", old, 5000)
    other = {c.name: c for c in await store.read_usage("other", LIMITS, window_ms=WINDOW, now_ms=T0 + 3 * WINDOW)}
    assert other[TPM].used == 10


async def test_a_clock_stepping_back_keeps_the_admission_in_the_window_no_shorter() -> None:
    store = MemoryStore()
    limits = Limits(rpm=2)
    assert (await store.admit("team", limits, 0, window_ms=WINDOW, now_ms=T0 + 500)).admitted
    assert (await store.admit("team", limits, 0, window_ms=WINDOW, now_ms=T0)).admitted  # stepped back
    # Both count until T0 + 500 + WINDOW, never leaving early.
    assert not (await store.admit("team", limits, 0, window_ms=WINDOW, now_ms=T0 + 500 + WINDOW - 1)).admitted
    assert (await store.admit("team", limits, 0, window_ms=WINDOW, now_ms=T0 + 500 + WINDOW)).admitted


async def test_a_busy_window_costs_bytes_per_admission_not_hundreds() -> None:
    store = MemoryStore()
    await store.admit("team", LIMITS, 100, window_ms=60_000, now_ms=T0)  # the scope exists
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):  # 100k admissions inside one window, as at ~1,700 req/s
            await store.admit("team", LIMITS, 100 + i % 7, window_ms=60_000, now_ms=T0 + i // 2)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000 * 40, f"{grown / 100_000:.0f} bytes per admission"
