"""Deadlines on writes to callers, as nginx's ``send_timeout``: a caller that stops reading
cannot hold a response, its upstream connection and their buffers for ever.

A write to a caller waits only when the caller's socket is full. A stream to a caller that
stopped reading (a client hung in a debugger, a laptop asleep, a deliberate slow reader) would
otherwise wait until TCP gives up, which it never does while the peer acknowledges with a zero
window; the upstream is paused meanwhile (read flow control), so its idle timeout cannot end it.

A write is registered with its deadline while it is under way and removed when it returns: a
dict store and a pop per write, no timer. Writes that do not wait are gone before the loop runs
anything else; one sweep every ``SWEEP_S`` aborts the connections whose write is past its
deadline, and the aborted write raises ``ConnectionResetError`` where it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gateway.periodic import every

#: How often waiting writes are checked: deadlines hold to within this.
SWEEP_S = 0.25


class SendDeadlines:
    """The writes to callers under way in this process, with when each must have finished."""

    __slots__ = ("_due", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._due: dict[asyncio.Transport, float] = {}

    def begin(self, transport: asyncio.Transport | None, timeout_s: float) -> None:
        """A write to ``transport`` starts: it must have finished within ``timeout_s``."""
        if transport is not None:
            self._due[transport] = self._loop.time() + timeout_s

    def end(self, transport: asyncio.Transport | None) -> None:
        """The write to ``transport`` returned or failed (calling this twice is harmless)."""
        if transport is not None:
            self._due.pop(transport, None)

    def sweep(self) -> None:
        if not self._due:
            return
        now = self._loop.time()
        for transport, due in list(self._due.items()):
            if due <= now:
                del self._due[transport]
                transport.abort()

    @contextlib.asynccontextmanager
    async def sweeping(self, interval_s: float = SWEEP_S) -> AsyncIterator[SendDeadlines]:
        """Sweep every ``interval_s`` while the app runs."""
        async with every(interval_s, self.sweep):
            yield self
