"""Benchmark: create → `running` through the openai SDK, on kwok's fake node and on the real node,
in the same run (the ratio is what to read, not the absolute figures).

    .venv/bin/python -m pytest tests/bench/bench_real_node.py -s

- kwok: the session's operator places pods on the fake node, the dev node agent runs sidecars;
- real: the `stack` fixture's operator places them on the real node, where containerd starts
  both containers and the sidecar must answer its readiness probe.

Each: 20 serial creates, then a burst of 50 with 10 in flight. Prints p50/p99 and the real/kwok
ratio; asserts only that every container ends `running`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from bench_create import create_until_running, percentile

pytestmark = pytest.mark.cluster

SERIAL, BURST, IN_FLIGHT = 20, 50, 10
results: dict[str, dict[str, list[float]]] = {}


def measure(client, label: str) -> None:
    serial = [create_until_running(client, f"{label}-serial-{i}") for i in range(SERIAL)]
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        burst = list(pool.map(lambda i: create_until_running(client, f"{label}-burst-{i}"), range(BURST)))
    results[label] = {"serial": serial, "burst": burst}
    for phase, values in results[label].items():
        ms = [v * 1000 for v in values]
        print(f"\n[bench create→running] {label} {phase}: n={len(ms)} p50={percentile(ms, 50):.0f}ms "
              f"p99={percentile(ms, 99):.0f}ms max={max(ms):.0f}ms")
    for container in client.containers.list(limit=100):
        client.containers.delete(container.id)


def test_kwok(gateway) -> None:
    measure(gateway.make_tenant("bench-kwok").client, "kwok")


def test_real_node(cluster, gateway, stack) -> None:
    measure(gateway.make_tenant("bench-real").client, "real")
    if cluster.control_plane and cluster.control_plane.node:
        rss = cluster.control_plane.rss()
        node_parts = {c.name for c in cluster.control_plane.node.components}
        print("[bench real node] resident memory: " + ", ".join(
            f"{name} {current / 2**20:.0f} MiB (peak {peak / 2**20:.0f})"
            for name, (current, peak) in sorted(rss.items()) if name in node_parts))
    if "kwok" in results:
        for phase in ("serial", "burst"):
            for p in (50, 99):
                real, kwok = percentile(results["real"][phase], p), percentile(results["kwok"][phase], p)
                print(f"[bench create→running] {phase} p{p}: real {real * 1000:.0f}ms / kwok {kwok * 1000:.0f}ms "
                      f"= {real / kwok:.2f}x")
