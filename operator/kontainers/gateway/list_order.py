"""The order of one namespace's container list, kept sorted as the watch changes the cache.

Each Container's sort key (`resource.list_key`, ending with its id) is computed when the
Container changes, never per request, and kept in a `SortedList` (sortedcontainers: pure Python,
O(log N) insert/remove/bisect, far less memory than a tree of nodes), so a page is a bisection and
a slice — O(log N + limit) — and a full walk O(N). `name=` lists read their own sorted list of
the Containers with that display name.
"""

from __future__ import annotations

from sortedcontainers import SortedList

SortKey = tuple[int, float, str, str]
_EMPTY: SortedList = SortedList()


class ListOrder:
    def __init__(self) -> None:
        self._all = SortedList()
        self._by_name: dict[str | None, SortedList] = {}
        self._entries: dict[str, tuple[SortKey, str | None]] = {}  # id → (key, display name)

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: SortKey, display_name: str | None) -> None:
        """Add or update one Container (its id is `key[-1]`); a change that keeps its key and
        display name costs one dict lookup."""
        entry = (key, display_name)
        known = self._entries.get(key[-1])
        if known == entry:
            return
        if known is not None:
            self.discard(key[-1])
        self._entries[key[-1]] = entry
        self._all.add(key)
        self._by_name.setdefault(display_name, SortedList()).add(key)

    def discard(self, container_id: str) -> SortKey | None:
        """Remove one Container; its key, or None when it was not here."""
        known = self._entries.pop(container_id, None)
        if known is None:
            return None
        key, display_name = known
        self._all.remove(key)
        same_name = self._by_name[display_name]
        same_name.remove(key)
        if not same_name:
            del self._by_name[display_name]
        return key

    def key(self, container_id: str, display_name: str | None = None) -> SortKey | None:
        """The key of a Container of this list (of those named `display_name`, when given)."""
        known = self._entries.get(container_id)
        if known is None or (display_name is not None and known[1] != display_name):
            return None
        return known[0]

    def keys(self, display_name: str | None = None) -> SortedList:
        """Every key in ascending order, or those of Containers with this display name."""
        return self._all if display_name is None else self._by_name.get(display_name, _EMPTY)
