"""Background work of the gateway that runs every few seconds for as long as the app runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


async def repeat(work: Callable[[], Awaitable[object]], interval: Callable[[], float], *, what: str) -> None:
    """Run `work` now, then again `interval()` seconds after each round ends, forever."""
    while True:
        try:
            await work()
        except Exception:  # a store or API hiccup must not end the sweeps: try again next round
            log.exception("%s failed", what)
        await asyncio.sleep(interval())


@contextlib.asynccontextmanager
async def running(work: Coroutine[Any, Any, None], name: str) -> AsyncIterator[None]:
    """`work` as a task while the block runs; cancelled (and awaited) when it ends."""
    task = asyncio.create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
