"""One gateway replica in a race: ``python -m tests.plugins.ratelimit.racer URL START RPM N TEAM...``.

Opens the store, waits until the wall-clock instant START, then admits N requests per team at
once through the rate-limit plugin and prints ``{"admitted": {team: count}, "errors": [...]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from gateway.errors import RateLimited
from gateway.store import open_store
from plugins.ratelimit import RateLimitPlugin
from tests.plugins.ratelimit.helpers import make_config, make_exchange


async def race(url: str, start: float, rpm: int, per_team: int, teams: list[str]) -> dict[str, object]:
    config = make_config({t: {"rpm": rpm} for t in teams}, store_url=url, timeout_ms=2000)
    store = open_store(config.store)
    plugin = RateLimitPlugin(store)
    assert await store.ping()  # connected before the start, so the race is between admissions
    errors: list[str] = []
    store.add_error_listener(lambda error: errors.append(error.message))

    async def one(team: str) -> bool:
        try:
            await plugin.admit(make_exchange(config, team))
        except RateLimited:
            return False
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return False
        return True

    await asyncio.sleep(max(0.0, start - time.time()))
    outcomes = await asyncio.gather(*(one(t) for _ in range(per_team) for t in teams))
    admitted = dict.fromkeys(teams, 0)
    for i, ok in enumerate(outcomes):
        admitted[teams[i % len(teams)]] += ok
    await store.close()
    return {"admitted": admitted, "errors": errors}


if __name__ == "__main__":
    url, start, rpm, per_team, *teams = sys.argv[1:]
    print(json.dumps(asyncio.run(race(url, float(start), int(rpm), int(per_team), teams))))
