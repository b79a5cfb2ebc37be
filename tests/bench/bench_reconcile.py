"""Benchmark: Container created → status `running`, through the real operator on the local control plane.

    .venv/bin/python -m pytest tests/bench/bench_reconcile.py -s

A pytest module (run it by path: the file name keeps it out of the default test run). It uses the
`cluster` and `operator` fixtures, creates Containers with kubernetes_asyncio and timestamps, on
a watch, when each one's status first says `running`:

- burst: 100 Containers created at once (20 create calls in flight) — latency includes queueing;
- serial: 20 Containers one after the other — the latency of a single create on an idle operator.

Prints p50/p90/p99/max per phase. Asserts only correctness (each Container running with exactly
one pod), nothing about time. On kwok a pod becomes Running as soon as it is scheduled, so this
measures the control loop (API server, scheduler, kwok, operator), not image pulls.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest
from kubernetes_asyncio import client, watch

from kontainers.resources import names

pytestmark = pytest.mark.cluster

BURST = 100
SERIAL = 20
IN_FLIGHT = 20


def body(name: str) -> dict:
    return {"apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": name}, "spec": {"name": name}}


class RunningWatch:
    """Records the first moment each Container of a namespace is seen `running`."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.running: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.started = asyncio.Event()

    async def run(self) -> None:
        w = watch.Watch()
        listing = await self.custom.list_namespaced_custom_object(names.GROUP, names.VERSION, self.namespace, names.PLURAL)
        version = listing["metadata"]["resourceVersion"]
        self.started.set()
        async with w.stream(self.custom.list_namespaced_custom_object, names.GROUP, names.VERSION,
                            self.namespace, names.PLURAL, resource_version=version, timeout_seconds=600) as events:
            async for event in events:
                obj = event["object"]
                name = obj["metadata"]["name"]
                if (obj.get("status") or {}).get("status") == "running" and name not in self.running:
                    self.running[name] = time.perf_counter()
                    self.changed.set()

    async def until(self, names_: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not names_ <= set(self.running):
            self.changed.clear()
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"not running after {timeout}s: {sorted(names_ - set(self.running))[:10]}"
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass


def figures(label: str, latencies: list[float], wall: float) -> str:
    ordered = sorted(latencies)
    pct = statistics.quantiles(ordered, n=100, method="inclusive")
    return (f"{label}: n={len(ordered)} p50={statistics.median(ordered) * 1000:.0f} ms "
            f"p90={pct[89] * 1000:.0f} ms p99={pct[98] * 1000:.0f} ms max={ordered[-1] * 1000:.0f} ms "
            f"(wall {wall:.1f} s)")


async def test_created_to_running_latency(cluster, operator, namespace, kube_api):
    custom = client.CustomObjectsApi(kube_api)
    watcher = RunningWatch(kube_api, namespace)
    task = asyncio.create_task(watcher.run())
    await asyncio.wait_for(watcher.started.wait(), 30)
    created: dict[str, float] = {}
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def create(name: str) -> None:
        async with limit:
            await custom.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, body(name))
            created[name] = time.perf_counter()

    try:
        burst = {f"burst-{i:03d}" for i in range(BURST)}
        began = time.perf_counter()
        await asyncio.gather(*(create(name) for name in sorted(burst)))
        await watcher.until(burst, timeout=300)
        burst_wall = time.perf_counter() - began

        serial = [f"serial-{i:03d}" for i in range(SERIAL)]
        began = time.perf_counter()
        for name in serial:
            await create(name)
            await watcher.until({name}, timeout=60)
        serial_wall = time.perf_counter() - began
    finally:
        task.cancel()

    # correctness: every Container has exactly one pod, and nothing else was made
    pods = await client.CoreV1Api(kube_api).list_namespaced_pod(
        namespace, label_selector=f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}")
    assert len(pods.items) == BURST + SERIAL
    owners = {p.metadata.owner_references[0].name for p in pods.items}
    assert owners == burst | set(serial)

    print()
    print(figures(f"burst of {BURST}", [watcher.running[n] - created[n] for n in burst], burst_wall))
    print(figures(f"serial {SERIAL}", [watcher.running[n] - created[n] for n in serial], serial_wall))
