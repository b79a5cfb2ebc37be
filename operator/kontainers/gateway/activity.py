"""Activity for idle expiry: a debounced PATCH of `kontainers.dev/last-active-at` per container.

The first touch in a quiet period is written at once; touches within the debounce window after a
write are folded into one trailing write at the end of the window. So a busy container costs at
most one PATCH per window, and the newest activity is never lost for longer than one window.
Replies use `seen()` so they show the activity before the annotation round-trips the watch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .resource import format_time

log = logging.getLogger(__name__)

Writer = Callable[[str, str, datetime], Awaitable[None]]  # (namespace, name, moment)


@dataclass
class _State:
    last_write: float = float("-inf")  # monotonic time of the last PATCH
    pending: datetime | None = None  # activity not yet written
    seen: datetime | None = None  # newest activity seen here
    flusher: asyncio.Task | None = field(default=None, repr=False)


class ActivityRecorder:
    def __init__(self, write: Writer, debounce_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._write = write
        self._window = debounce_seconds
        self._clock = clock
        self._states: dict[tuple[str, str], _State] = {}
        self._tasks: set[asyncio.Task] = set()

    def touch(self, namespace: str, name: str, moment: datetime | None = None) -> None:
        """Record activity on one container now (returns at once; the write happens in background)."""
        moment = moment or datetime.now(timezone.utc)
        state = self._states.setdefault((namespace, name), _State())
        state.seen = max(state.seen or moment, moment)
        if state.flusher is not None:
            state.pending = moment
            return
        wait = state.last_write + self._window - self._clock()
        if wait <= 0:
            state.last_write = self._clock()
            self._spawn(self._write_logged(namespace, name, moment))
        else:
            state.pending = moment
            state.flusher = self._spawn(self._flush_later(namespace, name, state, wait))

    def seen(self, namespace: str, name: str) -> datetime | None:
        state = self._states.get((namespace, name))
        return state.seen if state else None

    def forget(self, namespace: str, name: str) -> None:
        """The container is gone: drop its state and any trailing write."""
        state = self._states.pop((namespace, name), None)
        if state and state.flusher:
            state.flusher.cancel()

    async def close(self) -> None:
        """Write what is pending, then stop (on shutdown)."""
        for (namespace, name), state in list(self._states.items()):
            if state.flusher:
                state.flusher.cancel()
                state.flusher = None
                if state.pending:
                    self._spawn(self._write_logged(namespace, name, state.pending))
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _flush_later(self, namespace: str, name: str, state: _State, wait: float) -> None:
        await asyncio.sleep(wait)
        moment, state.pending, state.flusher = state.pending, None, None
        state.last_write = self._clock()
        if moment:
            await self._write_logged(namespace, name, moment)

    async def _write_logged(self, namespace: str, name: str, moment: datetime) -> None:
        try:
            await self._write(namespace, name, moment)
        except Exception as exc:  # activity is best effort: a lost write only shortens idle time
            if getattr(exc, "status", None) == 404:  # deleted meanwhile: nothing left to keep alive
                self.forget(namespace, name)
                return
            log.warning("recording activity of %s/%s failed: %s", namespace, name, exc)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def annotation_writer(annotate: Callable[[str, str, dict], Awaitable[None]], annotation: str) -> Writer:
    """A Writer that sets `annotation` to the RFC 3339 UTC time of the activity."""

    async def write(namespace: str, name: str, moment: datetime) -> None:
        await annotate(namespace, name, {annotation: format_time(moment)})

    return write
