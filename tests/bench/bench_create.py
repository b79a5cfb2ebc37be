"""Benchmark: `client.containers.create` → status `running`, through the whole product.

    .venv/bin/python -m pytest tests/bench/bench_create.py -s

The openai SDK against the gateway, operator and dev node agent on the local control plane
(fixtures `gateway`, `tenant`). The gateway answers a create once the container runs (bounded
wait), so the latency of one create is the SDK call; a reply still `pending` is followed by
retrieves until `running`. Phases:

- burst: 100 creates, 10 in flight — latency includes queueing in the gateway and operator;
- serial: 20 creates one after the other.

Prints p50/p90/p99/max per phase; asserts only that every container ends `running`.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.cluster

BURST = 100
SERIAL = 20
IN_FLIGHT = 10


def create_until_running(client, name: str) -> float:
    started = time.perf_counter()
    container = client.containers.create(name=name)
    while container.status != "running":
        assert container.status == "pending", f"{name}: {container.status}"
        time.sleep(0.05)
        container = client.containers.retrieve(container.id)
    return time.perf_counter() - started


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def report(phase: str, latencies: list[float], wall: float) -> None:
    ms = [value * 1000 for value in latencies]
    print(f"\n[bench create→running] {phase}: n={len(ms)} wall={wall:.1f}s "
          f"p50={percentile(ms, 50):.0f}ms p90={percentile(ms, 90):.0f}ms "
          f"p99={percentile(ms, 99):.0f}ms max={max(ms):.0f}ms mean={statistics.mean(ms):.0f}ms")


def test_create_to_running_latency(openai_client) -> None:
    client = openai_client

    started = time.perf_counter()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        burst = list(pool.map(lambda i: create_until_running(client, f"bench-burst-{i}"), range(BURST)))
    report(f"burst ({IN_FLIGHT} in flight)", burst, time.perf_counter() - started)

    started = time.perf_counter()
    serial = [create_until_running(client, f"bench-serial-{i}") for i in range(SERIAL)]
    report("serial", serial, time.perf_counter() - started)

    listed = list(client.containers.list(limit=100))  # the SDK pages through all of them
    assert len(listed) == BURST + SERIAL
    assert {c.status for c in listed} == {"running"}
