"""Which deployments are cooling down or broken, shared by every replica through the store.

Three kinds of record live in the store per deployment, all under one hash tag so a cluster
reads them in one round trip:

- ``cool``: an upstream 429; the deployment is skipped until the key expires;
- ``open``: the breaker opened after repeated failures; skipped until the key expires;
- ``tripped``: the breaker has not closed yet. Once ``open`` has expired, one probe request may
  pass (whoever claims ``probe`` first); its success deletes ``tripped`` and closes the breaker.

Each replica keeps a local view, updated at once by what it sees itself and refreshed from the
store every ``routing.sync_ms``, so routing decisions cost no round trip on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from gateway.config import RoutingSettings
from gateway.errors import StoreError
from gateway.store import Store

#: ``tripped`` outlives ``open`` by this factor, so a breaker stays half-open until a probe succeeds.
TRIPPED_FACTOR = 20
_TAG = "{routing}"


@dataclass(slots=True)
class View:
    """One deployment as this replica sees it: monotonic times until which each record holds."""

    cool_until: float = 0.0
    open_until: float = 0.0
    tripped_until: float = 0.0


def _key(kind: str, deployment: str) -> str:
    return f"rt:{_TAG}:{kind}:{deployment}"


class DeploymentHealth:
    def __init__(
        self,
        store: Store | None,
        deployments: Iterable[str],
        settings: RoutingSettings,
        clock: Callable[[], float] = time.monotonic,
        on_cooldown: Callable[[str, float], None] | None = None,
    ) -> None:
        self._store = store
        self._on_cooldown = on_cooldown
        self._names = tuple(deployments)
        self._settings = settings
        self._clock = clock
        self.views = {name: View() for name in self._names}
        self._poller: asyncio.Task[None] | None = None

    # -- reading the local view -----------------------------------------------------------------

    def wait_s(self, name: str, now: float) -> tuple[str, float] | None:
        """``("cooling"|"open", seconds)`` while ``name`` must be skipped, else ``None``."""
        view = self.views[name]
        if view.cool_until > now:
            return "cooling", view.cool_until - now
        if view.open_until > now:
            return "open", view.open_until - now
        return None

    def half_open(self, name: str, now: float) -> bool:
        view = self.views[name]
        return view.tripped_until > now >= view.open_until

    def cooldown_seconds(self) -> dict[str, float]:
        """Seconds each deployment still has to wait (0 when it is available)."""
        now = self._clock()
        return {name: (wait[1] if (wait := self.wait_s(name, now)) else 0.0) for name in self._names}

    # -- what this replica saw ------------------------------------------------------------------

    async def cool(self, name: str, seconds: float) -> None:
        self.views[name].cool_until = max(self.views[name].cool_until, self._clock() + seconds)
        self._announce(name)
        await self._write(self._store_set(_key("cool", name), seconds))

    async def open(self, name: str) -> None:
        seconds = self._settings.breaker_open_s
        now = self._clock()
        view = self.views[name]
        view.open_until = now + seconds
        view.tripped_until = now + seconds * TRIPPED_FACTOR
        self._announce(name)
        await self._write(self._store_set(_key("open", name), seconds))
        await self._write(self._store_set(_key("tripped", name), seconds * TRIPPED_FACTOR))

    async def close(self, name: str) -> None:
        view = self.views[name]
        view.open_until = view.tripped_until = 0.0
        self._announce(name)
        if self._store is not None:
            await self._write(self._store.delete(_key("tripped", name)))
            await self._write(self._store.delete(_key("open", name)))

    async def claim_probe(self, name: str, seconds: float) -> bool:
        """True for the one request, across replicas, that may test a half-open deployment."""
        if self._store is None:
            return True
        try:
            return await self._store.claim(_key("probe", name), int(seconds * 1000))
        except StoreError:
            return False  # unsure who probes: let the next sync decide

    # -- keeping the view fresh -----------------------------------------------------------------

    async def refresh(self) -> None:
        if self._store is None or not self._names:
            return
        keys = [_key(kind, name) for name in self._names for kind in ("cool", "open", "tripped")]
        try:
            remaining = await self._store.remaining_ms(keys)
        except StoreError:
            return  # keep what we know; the store counts the failure
        now = self._clock()
        for i, name in enumerate(self._names):
            view = self.views[name]
            before = self.wait_s(name, now)
            cool, opened, tripped = remaining[3 * i : 3 * i + 3]
            if cool:  # cooldowns only ever expire, so the longer record is the true one
                view.cool_until = max(view.cool_until, now + cool / 1000)
            view.open_until = now + opened / 1000 if opened else min(view.open_until, now)
            view.tripped_until = now + tripped / 1000 if tripped else 0.0
            if self.wait_s(name, now) != before:
                self._announce(name)

    def _announce(self, name: str) -> None:
        if self._on_cooldown is not None:
            wait = self.wait_s(name, self._clock())
            self._on_cooldown(name, wait[1] if wait else 0.0)

    def start(self) -> None:
        if self._store is not None and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None

    async def _poll(self) -> None:
        interval = self._settings.sync_ms / 1000
        while True:
            await self.refresh()
            await asyncio.sleep(interval)

    async def _store_set(self, key: str, seconds: float) -> None:
        if self._store is not None:
            await self._store.set(key, "1", max(1, int(seconds * 1000)))

    @staticmethod
    async def _write(operation: Awaitable[None]) -> None:
        # A store failure must not fail the request: the local view still holds the record.
        with contextlib.suppress(StoreError):
            await operation
