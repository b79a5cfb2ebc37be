"""Benchmark: container list pages at 10,000 Containers, gateway vs the API server's own LIST.

    .venv/bin/python -m pytest tests/bench/bench_lists.py -s      # KONTAINERS_BENCH_LIST_N=10000

A pytest module (run it by path). It writes N Containers straight to the API server (40 creates in
flight, with the gateway's created-at annotation, hundreds in each second) into one tenant's
namespace while the session's operator is paused (no pods: lists only read the Containers), waits
until the session's gateway has them all, then measures in the same run, one request at a time
and interleaved:

- first page (limit 20): gateway `GET /v1/containers` vs API server LIST `limit=20`;
- deep page: gateway `after=` the middle Container vs API server `continue` from the middle;
- `name=`: gateway by display name vs API server LIST `fieldSelector=metadata.name=` (one object);
- full walk (limit 100) of all N: gateway `after=` pages vs API server `continue` pages.

It prints p50/p99 and gateway ÷ API server per page kind, the gateway's RSS growth per 1,000
Containers, and — in this process, on the very objects LISTed — the page cost of the old full sort
(`paginate` over all N with `resource.list_key`) beside the cache's sorted order, and the memory
per 1,000 of plain decoded objects beside the cache. Asserts only correctness (every walk sees
all N once), nothing about time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import time
import tracemalloc
from datetime import datetime, timezone

import aiohttp
import pytest
from kubernetes_asyncio import client

from kontainers.api.pagination import ListParams, paginate
from kontainers.gateway import resource
from kontainers.gateway.cache import ContainerCache
from kontainers.resources import names

pytestmark = pytest.mark.cluster

N = int(os.environ.get("KONTAINERS_BENCH_LIST_N", "10000"))
IN_FLIGHT = 40
SAMPLES = 200
PAGE, WALK_PAGE = 20, 100


def body(i: int) -> dict:
    """As the gateway writes one (hundreds share each creation second; its annotation orders them)."""
    precise = datetime.now(timezone.utc)
    return {"apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": f"bench-{i:05d}",
                         "annotations": {names.ANNOTATION_CREATED_AT: resource.format_precise_time(precise)}},
            "spec": {"name": f"bench {i}"}}


def ms(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, statistics.quantiles(ordered, n=100, method="inclusive")[98] * 1000


def row(label: str, ours: list[float], theirs: list[float]) -> str:
    (g50, g99), (a50, a99) = ms(ours), ms(theirs)
    return (f"{label:<22} gateway p50 {g50:6.1f} ms p99 {g99:6.1f} ms | API server p50 {a50:6.1f} ms "
            f"p99 {a99:6.1f} ms | ratio p50 {g50 / a50:4.2f} p99 {g99 / a99:4.2f}")


class Clients:
    def __init__(self, http: aiohttp.ClientSession, gateway_url: str, api_key: str,
                 custom: client.CustomObjectsApi, namespace: str) -> None:
        self.http, self.url, self.key, self.custom, self.namespace = http, gateway_url, api_key, custom, namespace

    async def gateway(self, **query: str) -> dict:
        async with self.http.get(f"{self.url}/v1/containers", params=query,
                                 headers={"Authorization": f"Bearer {self.key}"}) as reply:
            assert reply.status == 200, await reply.text()
            return json.loads(await reply.read())

    async def api(self, **query: object) -> dict:
        reply = await self.custom.list_namespaced_custom_object(
            names.GROUP, names.VERSION, self.namespace, names.PLURAL, _preload_content=False, **query)
        return json.loads(await reply.read())


async def timed(call) -> tuple[float, dict]:
    began = time.perf_counter()
    result = await call
    return time.perf_counter() - began, result


async def compare(clients: Clients, gateway_query: dict, api_query: dict) -> tuple[list[float], list[float]]:
    ours, theirs = [], []
    for _ in range(SAMPLES):
        ours.append((await timed(clients.gateway(**gateway_query)))[0])
        theirs.append((await timed(clients.api(**api_query)))[0])
    return ours, theirs


async def walk_gateway(clients: Clients) -> tuple[float, list[str]]:
    seen, after, began = [], None, time.perf_counter()
    while True:
        page = await clients.gateway(limit=str(WALK_PAGE), **({"after": after} if after else {}))
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            return time.perf_counter() - began, seen
        after = page["last_id"]


async def walk_api(clients: Clients, stop_after: int | None = None) -> tuple[float, list[str], str | None]:
    """Every Container by `continue` pages (or the token after `stop_after` of them)."""
    seen, token, began = [], None, time.perf_counter()
    while True:
        page = await clients.api(limit=WALK_PAGE, **({"_continue": token} if token else {}))
        seen += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"].get("continue")
        if not token or (stop_after is not None and len(seen) >= stop_after):
            return time.perf_counter() - began, seen, token


def in_process(objs: list[dict], namespace: str, middle_id: str) -> list[str]:
    """Old full sort vs the cache's order, and memory per 1,000, on the LISTed objects."""
    encoded = [json.dumps(o) for o in objs]  # one watch event's worth of JSON per Container
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    plain = {resource.container_id(o): o for o in map(json.loads, encoded)}
    plain_bytes = tracemalloc.get_traced_memory()[0] - base
    del plain
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    cache = ContainerCache()
    for text in encoded:
        cache.upsert(json.loads(text))
    cache_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()

    cases = {"first page": {"limit": str(PAGE)}, "deep after= page": {"limit": str(PAGE), "after": middle_id}}
    lines = [f"in-process memory per 1,000: plain decoded objects {plain_bytes / len(objs) * 1000 / 2**20:.1f} MiB"
             f" → cache {cache_bytes / len(objs) * 1000 / 2**20:.1f} MiB"]
    for label, query in cases.items():
        params = ListParams.from_query(query)
        old, new = [], []
        for _ in range(20):
            items = cache.in_namespace(namespace)
            began = time.perf_counter()
            paginate(items, params=params, id_of=resource.container_id, key_of=resource.list_key)
            old.append(time.perf_counter() - began)
            began = time.perf_counter()
            cache.page(namespace, params)
            new.append(time.perf_counter() - began)
        lines.append(f"in-process {label:<17} full sort p50 {statistics.median(old) * 1000:7.2f} ms → "
                     f"sorted order p50 {statistics.median(new) * 1000:6.3f} ms "
                     f"({statistics.median(old) / statistics.median(new):.0f}×)")
    return lines


async def test_list_pages_against_the_api_server(gateway, no_session_operator, cluster, kube_api):
    tenant = gateway.make_tenant("bench-lists")
    namespace = tenant.namespace
    custom = client.CustomObjectsApi(kube_api)
    try:
        rss_before = gateway.rss()[0]
        limit = asyncio.Semaphore(IN_FLIGHT)

        async def create(i: int) -> None:
            async with limit:
                await custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL,
                                                             body(i))

        began = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(N)))
        created = time.perf_counter() - began

        async with aiohttp.ClientSession() as http:
            clients = Clients(http, gateway.url, tenant.api_key, custom, namespace)
            deadline = time.monotonic() + 300
            while len((await clients.gateway(name=f"bench {N - 1}"))["data"]) != 1:
                assert time.monotonic() < deadline, "the gateway's cache never saw every Container"
                await asyncio.sleep(0.2)
            await asyncio.sleep(1)  # let the watch's last events land before measuring memory
            rss_after = gateway.rss()[0]

            _, api_half, token = await walk_api(clients, stop_after=N // 2)
            middle = await clients.gateway(name=f"bench {N // 2}")
            middle_id = middle["data"][0]["id"]
            lines = [row("first page", *await compare(clients, {"limit": str(PAGE)}, {"limit": PAGE})),
                     row("deep page", *await compare(clients, {"limit": str(PAGE), "after": middle_id},
                                                     {"limit": PAGE, "_continue": token})),
                     row("name=", *await compare(clients, {"name": f"bench {N // 3}"},
                                                 {"field_selector": f"metadata.name=bench-{N // 3:05d}"}))]
            gateway_walk, gateway_ids = await walk_gateway(clients)
            api_walk, api_names, _ = await walk_api(clients)
            assert len(gateway_ids) == len(set(gateway_ids)) == N and len(api_names) == N
            listed = (await clients.api())["items"]
        assert len(listed) == N

        print()
        print(f"{N} Containers created through the API server in {created:.1f} s ({IN_FLIGHT} in flight)")
        for line in lines:
            print(line)
        print(f"{'full walk (limit 100)':<22} gateway {gateway_walk:.2f} s | API server {api_walk:.2f} s | "
              f"ratio {gateway_walk / api_walk:.2f}")
        print(f"gateway RSS growth per 1,000 Containers: {(rss_after - rss_before) / N * 1000 / 2**20:.1f} MiB")
        for line in in_process(listed, namespace, middle_id):
            print(line)
    finally:
        # while the operator is paused: it would otherwise start reconciling what is left
        cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=600s", check=False)
