"""A callable run every few moments while the app runs, as an async context manager for
``cleanup_ctx``: metrics flushing and the send-deadline sweep share it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable


@contextlib.asynccontextmanager
async def every(interval_s: float, run: Callable[[], None]) -> AsyncIterator[None]:
    """Call ``run`` every ``interval_s`` until the block exits (then not again: the caller decides
    whether a last run is due)."""

    async def repeat() -> None:
        while True:
            await asyncio.sleep(interval_s)
            run()

    task = asyncio.ensure_future(repeat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
