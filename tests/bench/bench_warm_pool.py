"""Benchmark: create → `running` through the openai SDK on the real node, warm vs cold, in one run.

    .venv/bin/python -m pytest tests/bench/bench_warm_pool.py -s

The real-node stack's operator runs twice, interleaved: with no pool (cold: every create waits for
its pod to be scheduled, started, and its sidecar ready) and with a pool for 1g (warm: the create
claims a ready pod). Phases: 50 serial creates, then a burst of 20 at once. Warm phases measure a
create "when a warm sandbox is available": before each serial create, and before the burst, the
pool is full (a serial pool of 2, a burst pool of 20); the wait for the refill is not measured.

Prints p50/p99 of each, the cold/warm ratio, and where a warm create's milliseconds go: the
operator's claim (its `kontainers_warm_pool_claim_duration_seconds`, from the claim's start to the
status write naming the pod) against the whole SDK round trip. Asserts only that every container
ends `running` and that the warm ones were warm.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench_create import create_until_running, percentile
from fixtures.operator import wait_for
from kontainers.resources import names

pytestmark = pytest.mark.cluster

SERIAL, BURST = 50, 20
SERIAL_POOL = 2


def set_pool(stack, size: int) -> None:
    stack.operator.env.update({"KONTAINERS_OPERATOR_WARM_POOL": json.dumps({"1g": size} if size else {}),
                               "KONTAINERS_OPERATOR_WARM_POOL_INTERVAL": "0.2"})
    stack.operator.restart("--egress-namespace", stack.egress.namespace)


def ready_pool_pods(cluster, namespace: str) -> int:
    found = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", f"{names.LABEL_POOL}=1g", "-o", "json"
                                       ).stdout)["items"]
    return sum(1 for p in found if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or []))


def wait_pool(cluster, namespace: str, size: int, stack) -> None:
    wait_for(lambda: ready_pool_pods(cluster, namespace) >= size, 300, f"{size} ready pool pods", stack.operator.tail,
             interval=0.1)


def starts(cluster, namespace: str) -> dict[str, str]:
    items = json.loads(cluster.kubectl("-n", namespace, "get", names.PLURAL, "-o", "json").stdout)["items"]
    return {b["status"].get("id"): b["status"].get("start") for b in items}


def claim_seconds(stack) -> tuple[float, int]:
    """(sum, count) of the operator's claim-duration histogram."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{stack.operator.ops_port}/metrics", timeout=5).read().decode()
    total = re.search(r"^kontainers_warm_pool_claim_duration_seconds_sum (\S+)$", text, re.M)
    count = re.search(r"^kontainers_warm_pool_claim_duration_seconds_count (\S+)$", text, re.M)
    return float(total[1]) if total else 0.0, int(float(count[1])) if count else 0


def clear(client) -> None:
    for container in client.containers.list(limit=100):
        client.containers.delete(container.id)


def report(label: str, values: list[float]) -> dict[int, float]:
    ms = [v * 1000 for v in values]
    print(f"\n[bench warm pool] {label}: n={len(ms)} p50={percentile(ms, 50):.0f}ms p99={percentile(ms, 99):.0f}ms "
          f"max={max(ms):.0f}ms")
    return {p: percentile(ms, p) for p in (50, 99)}


@pytest.mark.timeout(2400)  # cold bursts on two cores take minutes
def test_warm_vs_cold(cluster, gateway, stack) -> None:
    tenant = gateway.make_tenant("bench-warm")
    client, namespace = tenant.client, tenant.namespace
    figures: dict[str, dict[int, float]] = {}
    try:
        seed = client.containers.create(name="seed")  # the namespace holds a Container: it gets pools
        wait_for(lambda: client.containers.retrieve(seed.id).status == "running", 120, "the seed to run")

        set_pool(stack, 0)
        cold = [create_until_running(client, f"cold-serial-{i}") for i in range(SERIAL)]
        figures["cold serial"] = report("cold serial", cold)
        clear(client)

        set_pool(stack, SERIAL_POOL)
        seed = client.containers.create(name="seed")
        warm, ids = [], []
        claims_before = claim_seconds(stack)
        for i in range(SERIAL):
            wait_pool(cluster, namespace, SERIAL_POOL, stack)
            started = time.perf_counter()
            container = client.containers.create(name=f"warm-serial-{i}")
            warm.append(time.perf_counter() - started)
            assert container.status == "running"
            ids.append(container.id)
        claims_after = claim_seconds(stack)
        figures["warm serial"] = report("warm serial", warm)
        assert {starts(cluster, namespace)[i] for i in ids} == {"warm"}
        claimed = claims_after[1] - claims_before[1]
        operator_ms = (claims_after[0] - claims_before[0]) / max(1, claimed) * 1000
        print(f"[bench warm pool] warm serial: the operator's claim (claim start → status written) "
              f"{operator_ms:.1f}ms mean of {claimed}; the rest of the mean SDK round trip "
              f"({sum(warm) / len(warm) * 1000:.1f}ms) is the gateway's create (Container write, reply record), "
              f"the watch events to the operator and back, and the HTTP hop")
        clear(client)

        set_pool(stack, 0)
        seed = client.containers.create(name="seed")
        with ThreadPoolExecutor(BURST) as workers:
            cold_burst = list(workers.map(lambda i: create_until_running(client, f"cold-burst-{i}"), range(BURST)))
        figures["cold burst"] = report("cold burst", cold_burst)
        clear(client)

        set_pool(stack, BURST)
        seed = client.containers.create(name="seed")
        wait_pool(cluster, namespace, BURST, stack)
        with ThreadPoolExecutor(BURST) as workers:
            warm_burst = list(workers.map(lambda i: create_until_running(client, f"warm-burst-{i}"), range(BURST)))
        figures["warm burst"] = report("warm burst", warm_burst)
        found = starts(cluster, namespace)
        print(f"[bench warm pool] warm burst: {sum(1 for s in found.values() if s == 'warm')} of {len(found)} warm "
              f"(the seed included)")
        for phase in ("serial", "burst"):
            for p in (50, 99):
                c, w = figures[f"cold {phase}"][p], figures[f"warm {phase}"][p]
                print(f"[bench warm pool] {phase} p{p}: cold {c:.0f}ms / warm {w:.0f}ms = {c / w:.1f}x")
    finally:
        clear(client)
        set_pool(stack, 0)
