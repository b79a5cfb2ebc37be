"""An in-memory mirror of the Container resources, fed by a list+watch, indexed by OpenAI id.

Requests read only from here (no LIST per request); list pages come from a `ListOrder` per
namespace kept sorted here. Waiters (a create waiting for `running`)
are woken on every change. Objects being deleted are hidden, and a Container this gateway just
deleted stays hidden even if a late watch event mentions it again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from ..api.pagination import ListParams, Page, paginate_sorted
from ..observability import CONTAINERS
from . import resource
from .compact import compact
from .list_order import ListOrder, SortKey

T = TypeVar("T")
_GONE_KEYS = 10_000  # sort keys remembered for deleted ids, so paging past them still works
_TOMBSTONE_SECONDS = 600.0


class ContainerCache:
    def __init__(self) -> None:
        self._by_id: dict[str, dict] = {}
        self._by_namespace: dict[str, dict[str, dict]] = {}
        self._orders: dict[str, ListOrder] = {}
        self._gone_keys: OrderedDict[str, SortKey] = OrderedDict()
        self._tombstones: dict[str, float] = {}  # uid → monotonic time of our delete
        self._changed = asyncio.Event()
        self._removal_listeners: list[Callable[[dict], None]] = []
        self.synced = False

    def on_removed(self, listener: Callable[[dict], None]) -> None:
        """Call `listener(obj)` whenever a Container leaves the cache (deleted, or gone at a relist),
        so per-container state kept elsewhere (activity, sidecar tokens) does not outlive it."""
        self._removal_listeners.append(listener)

    # --- reads ------------------------------------------------------------------------------

    def get(self, namespace: str, container_id: str) -> dict | None:
        """The Container with this OpenAI id, only if it lives in `namespace`."""
        return self._by_namespace.get(namespace, {}).get(container_id)

    def in_namespace(self, namespace: str) -> list[dict]:
        return list(self._by_namespace.get(namespace, {}).values())

    def all(self) -> list[dict]:
        """Every cached Container (for background work such as file delivery, not for requests)."""
        return list(self._by_id.values())

    def gone_key(self, container_id: str) -> SortKey | None:
        """The sort key a since-deleted container had (for `after` cursors that name it)."""
        return self._gone_keys.get(container_id)

    def page(self, namespace: str, params: ListParams, display_name: str | None = None) -> Page[dict]:
        """One page of the namespace's Containers (only those with this display name, when given)
        in list order; an `after` naming none of them nor a deleted one raises UnknownCursor."""
        order = self._orders.get(namespace) or ListOrder()
        cursor = None
        if params.after is not None:
            cursor = order.key(params.after, display_name) or self.gone_key(params.after)
        keys = paginate_sorted(order.keys(display_name), params=params, id_of=lambda key: key[-1], cursor=cursor)
        objs = self._by_namespace[namespace] if keys.data else {}
        return Page(data=[objs[key[-1]] for key in keys.data], has_more=keys.has_more,
                    first_id=keys.first_id, last_id=keys.last_id)

    def __len__(self) -> int:
        return len(self._by_id)

    async def wait_for(self, predicate: Callable[[], T], timeout: float) -> T:
        """Wait until `predicate()` is truthy (re-checked on every change); its last value on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            remaining = deadline - time.monotonic()
            if value or remaining <= 0:
                return value
            changed = self._changed
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # arrives as the event is set, and a cancelled waiter (a stopping gateway) loops on.
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                pass

    # --- writes (the watch, and this gateway's own creates and deletes) ------------------------

    def replace(self, objs: Iterable[dict], namespace: str | None = None) -> None:
        """A fresh LIST (of one namespace, or of all): everything in its scope not in it is gone."""
        in_scope = [o for o in self._by_id.values() if namespace in (None, o["metadata"]["namespace"])]
        for obj in in_scope:
            self._drop(obj)
        for obj in objs:
            if not obj["metadata"].get("deletionTimestamp") and not self._is_tombstoned(obj["metadata"]["uid"]):
                self._put(obj)
        for obj in in_scope:
            if resource.container_id(obj) not in self._by_id:
                self._remember_gone(obj)
                self._removed(obj)
        CONTAINERS.replace({self._metric_key(o): resource.status_of(o) for o in self._by_id.values()})
        self._notify()

    def mark_synced(self) -> None:
        """Every watched scope has been listed once: the cache can answer requests."""
        self.synced = True
        self._notify()

    def apply(self, event_type: str, obj: dict) -> None:
        """One watch event (ADDED, MODIFIED, DELETED)."""
        if event_type == "DELETED":
            self.remove(obj)
        elif event_type in ("ADDED", "MODIFIED"):
            self.upsert(obj)

    def upsert(self, obj: dict) -> None:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") or self._is_tombstoned(meta["uid"]):
            self.remove(obj)
            return
        self._put(obj)
        CONTAINERS.observe(self._metric_key(obj), resource.status_of(obj))
        self._notify()

    def add_if_absent(self, obj: dict) -> None:
        """Our own create's reply: the watch may already have delivered something newer."""
        if resource.container_id(obj) not in self._by_id:
            self.upsert(obj)

    def remove(self, obj: dict) -> None:
        known = self._drop(obj)
        if known is not None:
            self._remember_gone(known)
            self._removed(known)
        CONTAINERS.forget(self._metric_key(obj))
        self._notify()

    def forget_deleted(self, obj: dict) -> None:
        """This gateway deleted it: hide it now and ignore late events that still show it."""
        now = time.monotonic()
        self._tombstones = {u: t for u, t in self._tombstones.items() if now - t < _TOMBSTONE_SECONDS}
        self._tombstones[obj["metadata"]["uid"]] = now
        self.remove(obj)

    # --- internals ------------------------------------------------------------------------

    def _put(self, obj: dict) -> None:
        compact(obj)  # in place: the object is ours (a watch event's, or our own create's reply)
        key = resource.list_key(obj)
        cid, namespace = key[-1], obj["metadata"]["namespace"]
        self._by_id[cid] = obj
        self._by_namespace.setdefault(namespace, {})[cid] = obj
        self._orders.setdefault(namespace, ListOrder()).put(key, (obj.get("spec") or {}).get("name"))

    def _drop(self, obj: Mapping) -> dict | None:
        cid = resource.container_id(obj)
        known = self._by_id.pop(cid, None)
        if known is not None:
            namespace = known["metadata"]["namespace"]
            self._by_namespace.get(namespace, {}).pop(cid, None)
            self._orders[namespace].discard(cid)
        return known

    def _remember_gone(self, obj: dict) -> None:
        self._gone_keys[resource.container_id(obj)] = resource.list_key(obj)
        while len(self._gone_keys) > _GONE_KEYS:
            self._gone_keys.popitem(last=False)

    def _removed(self, obj: dict) -> None:
        for listener in self._removal_listeners:
            listener(obj)

    def _is_tombstoned(self, uid: str) -> bool:
        stamp = self._tombstones.get(uid)
        return stamp is not None and time.monotonic() - stamp < _TOMBSTONE_SECONDS

    @staticmethod
    def _metric_key(obj: Mapping) -> str:
        return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
