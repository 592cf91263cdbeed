"""UTC calendar buckets for the daily and monthly quotas, from epoch milliseconds.

The Redis script does the same arithmetic in Lua from the server's ``TIME``; this module is the
memory store's copy, and the tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Buckets:
    """The day and month an instant falls in, and when each of them ends."""

    day: int  # days since the epoch
    day_end_ms: int
    month: int  # yyyymm
    month_end_ms: int

    def holds(self, at_ms: int) -> bool:
        """Whether ``at_ms`` falls in this day (and so in this month)."""
        return self.day_end_ms - DAY_MS <= at_ms < self.day_end_ms


def buckets(at_ms: int) -> Buckets:
    day = at_ms // DAY_MS
    start = datetime.fromtimestamp(day * 86_400, UTC)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    month_end = datetime(year, month, 1, tzinfo=UTC)
    return Buckets(day, (day + 1) * DAY_MS, start.year * 100 + start.month, int(month_end.timestamp()) * 1000)
