"""One asyncio lock per key (an Upload, a Skill): changes to one object are serialised in this process."""

from __future__ import annotations

import asyncio
import weakref


class KeyedLocks:
    """One lock per (tenant, id), dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, tenant: str, object_id: str) -> asyncio.Lock:
        key = (tenant, object_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock
