"""Cursor pagination shared by every list endpoint (containers, and files in the sidecar).

The SDKs page by sending the id of the last item they got as `after`, with the other parameters
unchanged, and stop when `has_more` is false. So `after` is exclusive *in the requested order*,
items are totally ordered by a key fixed at creation that ends with the id (creation times tie at
one-second resolution: containers break ties by a sub-second time the gateway records), and
`has_more` is always a boolean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
SortKey = tuple
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class ListParams(BaseModel):
    """`after`, `limit` (1–100, default 20) and `order` (`asc`|`desc`, default `desc`) of a list call."""

    model_config = ConfigDict(extra="ignore")

    after: str | None = Field(default=None, min_length=1, description="Exclusive cursor: an item id.")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Page size, 1–100.")
    order: Literal["asc", "desc"] = Field(default="desc", description="By creation time.")

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ListParams:
        """Parse query-string values (raises pydantic.ValidationError naming the parameter)."""
        return cls.model_validate({k: query[k] for k in ("after", "limit", "order") if k in query})


class UnknownCursor(LookupError):
    """`after` names no item of this list (and no key for it was supplied)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    data: list[T]
    has_more: bool
    first_id: str | None
    last_id: str | None

    def envelope(self, dump: Callable[[T], object] = lambda item: item) -> dict:
        """The wire list object: all five fields, ids null when the page is empty."""
        return {"object": "list", "data": [dump(item) for item in self.data], "first_id": self.first_id,
                "last_id": self.last_id, "has_more": self.has_more}


def paginate(
    items: Iterable[T],
    *,
    params: ListParams,
    id_of: Callable[[T], str],
    key_of: Callable[[T], SortKey],
    after_key: SortKey | None = None,
) -> Page[T]:
    """One page of `items` in `params.order`, strictly after the item `params.after`.

    `key_of` must give a total order (end it with the id). When `after` is not among `items`
    (e.g. deleted since the client got it) pass its last known key as `after_key`; without one,
    UnknownCursor is raised.
    """
    ordered: Sequence[T] = sorted(items, key=key_of, reverse=params.order == "desc")
    if params.after is not None:
        cursor = after_key
        for item in ordered:
            if id_of(item) == params.after:
                cursor = key_of(item)
                break
        if cursor is None:
            raise UnknownCursor(params.after)
        if params.order == "asc":
            ordered = [item for item in ordered if key_of(item) > cursor]
        else:
            ordered = [item for item in ordered if key_of(item) < cursor]
    return _page(list(ordered[: params.limit]), len(ordered) > params.limit, id_of)


class SortedKeys(Protocol):
    """Keys kept in ascending order with bisection (e.g. `sortedcontainers.SortedList`)."""

    def __len__(self) -> int: ...
    def bisect_left(self, key: SortKey) -> int: ...
    def bisect_right(self, key: SortKey) -> int: ...
    def islice(self, start: int | None = None, stop: int | None = None, reverse: bool = False) -> Iterator: ...


def paginate_sorted(
    keys: SortedKeys,
    *,
    params: ListParams,
    id_of: Callable[[SortKey], str],
    cursor: SortKey | None,
) -> Page[SortKey]:
    """`paginate` over keys already in ascending order, in O(log N + limit): `cursor` is the key of
    `params.after` (found by the caller, or remembered for a deleted item); None with an `after`
    raises UnknownCursor."""
    if params.after is not None and cursor is None:
        raise UnknownCursor(params.after)
    if params.order == "asc":
        start = 0 if cursor is None else keys.bisect_right(cursor)
        stop = min(start + params.limit, len(keys))
        return _page(list(keys.islice(start, stop)), stop < len(keys), id_of)
    stop = len(keys) if cursor is None else keys.bisect_left(cursor)
    start = max(stop - params.limit, 0)
    return _page(list(keys.islice(start, stop, reverse=True)), start > 0, id_of)


def _page(data: list[T], has_more: bool, id_of: Callable[[T], str]) -> Page[T]:
    return Page(
        data=data,
        has_more=has_more,
        first_id=id_of(data[0]) if data else None,
        last_id=id_of(data[-1]) if data else None,
    )
