"""Admission, refusal and reconciliation: the same algorithm in every store.

Times are passed as ``now_ms`` so each step lands exactly where the test says; the real-clock
versions of these claims are in tests/plugins/ratelimit.
"""

from __future__ import annotations

import asyncio

from gateway.config import Limits
from gateway.store import Store

T0 = 1_790_000_000_000  # an arbitrary instant in 2026
WINDOW = 2000


async def test_rpm_admits_exactly_the_limit_under_concurrency(store: Store, scope: str) -> None:
    limits = Limits(rpm=7)
    decisions = await asyncio.gather(*(store.admit(scope, limits, 1, window_ms=WINDOW) for _ in range(30)))
    assert sum(d.admitted for d in decisions) == 7
    refused = [d for d in decisions if not d.admitted]
    assert {d.refused_by for d in refused} == {"rpm"}


async def test_rpm_retry_after_is_when_the_oldest_admission_leaves(store: Store, scope: str) -> None:
    limits = Limits(rpm=3)
    for step in range(3):
        assert (await store.admit(scope, limits, 0, window_ms=WINDOW, now_ms=T0 + 100 * step)).admitted
    refused = await store.admit(scope, limits, 0, window_ms=WINDOW, now_ms=T0 + 300)
    assert not refused.admitted
    assert refused.refused_by == "rpm"
    assert refused.retry_after_ms == WINDOW - 300
    retry_at = T0 + 300 + WINDOW - 300
    assert not (await store.admit(scope, limits, 0, window_ms=WINDOW, now_ms=retry_at - 1)).admitted
    assert (await store.admit(scope, limits, 0, window_ms=WINDOW, now_ms=retry_at)).admitted


async def test_tpm_retry_after_is_when_enough_tokens_leave(store: Store, scope: str) -> None:
    limits = Limits(tpm=100)
    assert (await store.admit(scope, limits, 60, window_ms=WINDOW, now_ms=T0)).admitted
    assert (await store.admit(scope, limits, 30, window_ms=WINDOW, now_ms=T0 + 500)).admitted
    # 50 more fits once the 60 admitted at T0 have left: at T0 + WINDOW.
    refused = await store.admit(scope, limits, 50, window_ms=WINDOW, now_ms=T0 + 1000)
    assert (refused.admitted, refused.refused_by, refused.retry_after_ms) == (False, "tpm", WINDOW - 1000)
    assert not (await store.admit(scope, limits, 50, window_ms=WINDOW, now_ms=T0 + WINDOW - 1)).admitted
    assert (await store.admit(scope, limits, 50, window_ms=WINDOW, now_ms=T0 + WINDOW)).admitted


async def test_tpm_retry_after_looks_past_the_first_page_of_the_log(store: Store, scope: str) -> None:
    limits = Limits(tpm=260)
    for i in range(250):
        assert (await store.admit(scope, limits, 1, window_ms=WINDOW, now_ms=T0 + i)).admitted
    # 200 more fits once 190 of the 1-token admissions have left: the one at T0 + 189 is the last.
    refused = await store.admit(scope, limits, 200, window_ms=WINDOW, now_ms=T0 + 300)
    assert refused.retry_after_ms == 189 + WINDOW - 300
    frees = T0 + 189 + WINDOW
    assert not (await store.admit(scope, limits, 200, window_ms=WINDOW, now_ms=frees - 1)).admitted
    assert (await store.admit(scope, limits, 200, window_ms=WINDOW, now_ms=frees)).admitted


async def test_the_slowest_limit_decides_the_retry(store: Store, scope: str) -> None:
    limits = Limits(rpm=2, tpm=100)
    assert (await store.admit(scope, limits, 90, window_ms=WINDOW, now_ms=T0)).admitted
    assert (await store.admit(scope, limits, 5, window_ms=WINDOW, now_ms=T0 + 800)).admitted
    # rpm frees at T0 + WINDOW, when the first admission leaves; 96 tokens fit only once both left.
    refused = await store.admit(scope, limits, 96, window_ms=WINDOW, now_ms=T0 + 1000)
    assert refused.refused_by == "tpm"
    assert refused.retry_after_ms == WINDOW + 800 - 1000
    assert not (await store.admit(scope, limits, 96, window_ms=WINDOW, now_ms=T0 + WINDOW + 799)).admitted
    assert (await store.admit(scope, limits, 96, window_ms=WINDOW, now_ms=T0 + WINDOW + 800)).admitted


async def test_a_request_larger_than_the_limit_can_never_fit(store: Store, scope: str) -> None:
    decision = await store.admit(scope, Limits(tpm=100), 101, window_ms=WINDOW, now_ms=T0)
    assert (decision.admitted, decision.refused_by, decision.retry_after_ms) == (False, "tpm", None)


async def test_reconcile_replaces_the_reservation_with_actual_usage(store: Store, scope: str) -> None:
    limits = Limits(rpm=10, tpm=1000, tokens_per_day=10_000, tokens_per_month=100_000)
    first = await store.admit(scope, limits, 300, window_ms=WINDOW, now_ms=T0)
    second = await store.admit(scope, limits, 300, window_ms=WINDOW, now_ms=T0 + 10)
    assert first.reservation and second.reservation
    await store.reconcile(scope, first.reservation, 120)
    await store.reconcile(scope, second.reservation, 0)  # nothing served: released
    usage = {c.name: c.used for c in await store.read_usage(scope, limits, window_ms=WINDOW, now_ms=T0 + 20)}
    assert usage == {"rpm": 2, "tpm": 120, "tokens_per_day": 120, "tokens_per_month": 120}


async def test_admitted_counters_report_remaining_and_reset(store: Store, scope: str) -> None:
    limits = Limits(rpm=5, tpm=1000)
    await store.admit(scope, limits, 100, window_ms=WINDOW, now_ms=T0)
    decision = await store.admit(scope, limits, 200, window_ms=WINDOW, now_ms=T0 + 500)
    by_name = {c.name: c for c in decision.counters}
    assert (by_name["rpm"].remaining, by_name["tpm"].remaining) == (3, 700)
    assert by_name["rpm"].reset_ms == by_name["tpm"].reset_ms == WINDOW - 500


async def test_only_the_configured_limits_are_reported(store: Store, scope: str) -> None:
    decision = await store.admit(scope, Limits(tokens_per_day=50), 10, window_ms=WINDOW, now_ms=T0)
    assert [c.name for c in decision.counters] == ["tokens_per_day"]


async def test_values_expire(store: Store, scope: str) -> None:
    await store.set(f"cooldown:{scope}", "until-later", 150)
    assert await store.get(f"cooldown:{scope}") == "until-later"
    await asyncio.sleep(0.3)
    assert await store.get(f"cooldown:{scope}") is None
    assert await store.ping()
