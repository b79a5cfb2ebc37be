"""Container list pages from the cache's sorted order, against the full sort they replace.

The oracle is `paginate` over every Container of the namespace with `resource.list_key` (what
each request used to do); the cache must give the very same pages, whatever the watch did.
"""

from __future__ import annotations

import random

import pytest

from kontainers.api.pagination import ListParams, UnknownCursor, paginate
from kontainers.gateway import resource
from kontainers.gateway.cache import ContainerCache
from kontainers.gateway.list_order import ListOrder
from kontainers.resources import names

NS = "ns"


def container(rng: random.Random, index: int, namespace: str = NS) -> dict:
    """Few seconds and few display names, so ties at every level of the key are common; some
    Containers have no (or an unparseable) created-at annotation, like kubectl-made ones."""
    second = rng.randrange(4)
    annotations = {}
    roll = rng.random()
    if roll < 0.6:
        annotations[names.ANNOTATION_CREATED_AT] = f"2030-01-01T00:00:0{second}.{rng.randrange(3):06d}Z"
    elif roll < 0.7:
        annotations[names.ANNOTATION_CREATED_AT] = "not a time"
    metadata = {"name": f"c-{rng.randrange(5)}-{index}" if rng.random() < 0.5 else f"same-{index % 3}",
                "namespace": namespace, "uid": f"uid-{index}",
                "creationTimestamp": f"2030-01-01T00:00:0{second}Z", "annotations": annotations}
    if rng.random() < 0.05:
        del metadata["creationTimestamp"]
    return {"metadata": metadata, "spec": {"name": rng.choice(["alpha", "beta", "gamma"])}, "status": {}}


def cid(obj: dict) -> str:
    return names.container_id(obj["metadata"]["uid"])


def old_page(objs: list[dict], params: ListParams, cache: ContainerCache, name: str | None = None):
    """The list handler before the index: filter, sort all, scan for the cursor."""
    items = [o for o in objs if name is None or o["spec"]["name"] == name]
    return paginate(items, params=params, id_of=resource.container_id, key_of=resource.list_key,
                    after_key=cache.gone_key(params.after) if params.after else None)


def ids(page) -> list[str]:
    return [cid(o) for o in page.data]


def assert_same_pages(cache: ContainerCache, live: dict[str, dict], cursors: list[str], rng: random.Random) -> None:
    objs = list(live.values())
    for _ in range(40):
        query = {"order": rng.choice(["asc", "desc"]), "limit": str(rng.choice([1, 2, 5, 20, 100]))}
        if rng.random() < 0.8:
            query["after"] = rng.choice(cursors)
        name = rng.choice([None, None, "alpha", "beta", "nobody"])
        params = ListParams.from_query(query)
        try:
            expected = old_page(objs, params, cache, name)
        except UnknownCursor:
            with pytest.raises(UnknownCursor):
                cache.page(NS, params, name)
            continue
        got = cache.page(NS, params, name)
        assert (ids(got), got.has_more, got.first_id, got.last_id) == \
            (ids(expected), expected.has_more, expected.first_id, expected.last_id), (query, name)


@pytest.mark.parametrize("seed", range(12))
def test_pages_equal_the_full_sort_through_creates_updates_and_deletes(seed: int) -> None:
    rng = random.Random(seed)
    cache = ContainerCache()
    made = [container(rng, i) for i in range(120)]
    cache.replace(made[:60])
    live = {cid(o): o for o in made[:60]}
    for obj in made[60:]:
        cache.apply("ADDED", obj)
        live[cid(obj)] = obj
    cache.apply("ADDED", container(rng, 999, namespace="other"))  # another tenant's: never listed here
    cursors = [cid(o) for o in made] + ["cntr_unknown", names.container_id("uid-999")]
    assert_same_pages(cache, live, cursors, rng)

    for obj in rng.sample(made, 30):  # status and activity changes leave the order alone
        changed = {**obj, "status": {"status": "running"},
                   "metadata": {**obj["metadata"], "annotations": {**obj["metadata"]["annotations"],
                                                                   names.ANNOTATION_LAST_ACTIVE: "2031-01-01T00:00:00Z"}}}
        cache.apply("MODIFIED", changed)
        live[cid(obj)] = changed
    for obj in rng.sample(made, 10):  # a display name edited with kubectl moves it between name= lists
        changed = {**live[cid(obj)], "spec": {"name": "beta"}}
        cache.apply("MODIFIED", changed)
        live[cid(obj)] = changed
    for obj in rng.sample(made, 25):
        cache.apply("DELETED", obj)
        live.pop(cid(obj))
    assert len(cache.in_namespace(NS)) == len(live)
    assert_same_pages(cache, live, cursors, rng)

    survivors = list(live.values())
    cache.replace(survivors[: len(survivors) // 2], namespace=NS)  # a relist: the rest are gone
    live = {cid(o): o for o in survivors[: len(survivors) // 2]}
    assert_same_pages(cache, live, cursors, rng)


def test_a_full_walk_visits_every_container_once_in_order() -> None:
    rng = random.Random(7)
    cache = ContainerCache()
    made = [container(rng, i) for i in range(250)]
    cache.replace(made)
    for order in ("asc", "desc"):
        walked, after = [], None
        while True:
            page = cache.page(NS, ListParams.from_query({"order": order, "limit": "9",
                                                         **({"after": after} if after else {})}))
            walked += ids(page)
            if not page.has_more:
                break
            after = page.last_id
        expected = [cid(o) for o in sorted(made, key=resource.list_key, reverse=order == "desc")]
        assert walked == expected


def test_the_cursor_of_a_deleted_container_still_pages_past_it() -> None:
    rng = random.Random(3)
    cache = ContainerCache()
    made = sorted((container(rng, i) for i in range(10)), key=resource.list_key)
    cache.replace(made)
    cache.apply("DELETED", made[4])
    page = cache.page(NS, ListParams.from_query({"order": "asc", "after": cid(made[4])}))
    assert ids(page) == [cid(o) for o in made[5:]]
    page = cache.page(NS, ListParams.from_query({"order": "desc", "after": cid(made[4])}))
    assert ids(page) == [cid(o) for o in reversed(made[:4])]
    with pytest.raises(UnknownCursor):
        cache.page(NS, ListParams.from_query({"after": "cntr_never_existed"}))


def test_name_lists_hold_only_that_display_name_and_refuse_a_cursor_of_another() -> None:
    rng = random.Random(5)
    cache = ContainerCache()
    made = [container(rng, i) for i in range(60)]
    cache.replace(made)
    alphas = sorted((o for o in made if o["spec"]["name"] == "alpha"), key=resource.list_key)
    beta = next(o for o in made if o["spec"]["name"] == "beta")
    page = cache.page(NS, ListParams.from_query({"order": "asc", "limit": "100"}), "alpha")
    assert ids(page) == [cid(o) for o in alphas]
    assert cache.page(NS, ListParams.from_query({}), "nobody").data == []
    with pytest.raises(UnknownCursor):  # a live Container, but not one of this list: as before, a 400
        cache.page(NS, ListParams.from_query({"after": cid(beta)}), "alpha")


def test_an_update_that_changes_the_key_moves_the_entry() -> None:
    order = ListOrder()
    order.put((5, 0.0, "b", "cntr_b"), "x")
    order.put((1, 0.0, "a", "cntr_a"), "x")
    order.put((9, 0.0, "a", "cntr_a"), "y")  # its created-at annotation edited with kubectl
    assert list(order.keys()) == [(5, 0.0, "b", "cntr_b"), (9, 0.0, "a", "cntr_a")]
    assert list(order.keys("x")) == [(5, 0.0, "b", "cntr_b")]
    assert order.key("cntr_a", "x") is None and order.key("cntr_a", "y") == (9, 0.0, "a", "cntr_a")
    assert order.discard("cntr_a") == (9, 0.0, "a", "cntr_a") and order.discard("cntr_a") is None
    assert len(order) == 1 and list(order.keys("y")) == []
