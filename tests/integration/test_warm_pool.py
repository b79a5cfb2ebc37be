"""The warm pool against the real control plane on fake nodes (kwok, the dev node agent running
each pod's sidecar): claims through the openai SDK, refill, concurrency, loss and operator kills.

The module runs its own operator (the session's is paused) with a pool of 3 for 1g; tests that
need another size of pool restart it with other settings and restore it afterwards.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from fixtures.operator import OPERATOR_TEST_ARGS, OperatorProcess, wait_for
from kontainers.resources import names

pytestmark = pytest.mark.cluster

POOL = 3


@pytest.fixture(scope="module")
def pool_operator(cluster, gateway, no_session_operator, tmp_path_factory) -> OperatorProcess:
    process = OperatorProcess(cluster.kubeconfig, tmp_path_factory.mktemp("pool-operator") / "operator.log", env={
        **getattr(cluster, "env", {}),
        "KONTAINERS_OPERATOR_SIDECAR_READINESS_GATE": "true",  # the dev node agent sets it
        "KONTAINERS_OPERATOR_WARM_POOL": json.dumps({"1g": POOL}),
        "KONTAINERS_OPERATOR_WARM_POOL_INTERVAL": "0.5",
    }, args=OPERATOR_TEST_ARGS)
    process.start()
    yield process
    process.stop()


def kubectl_json(cluster, namespace: str, *args: str) -> Any:
    return json.loads(cluster.kubectl("-n", namespace, "get", *args, "-o", "json").stdout)


def containers(cluster, namespace: str) -> list[dict]:
    return kubectl_json(cluster, namespace, names.PLURAL)["items"]


def pods(cluster, namespace: str, selector: str | None = None) -> list[dict]:
    args = ("pods",) + (("-l", selector) if selector else ())
    return [p for p in kubectl_json(cluster, namespace, *args)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
    return conditions.get("Ready") == "True" and conditions.get(names.CONDITION_SIDECAR_READY) == "True"


def pool_pods(cluster, namespace: str) -> list[dict]:
    return pods(cluster, namespace, f"{names.LABEL_POOL}=1g")


def wait_pool(cluster, namespace: str, count: int, operator: OperatorProcess, timeout: float = 60) -> list[dict]:
    def full():
        found = pool_pods(cluster, namespace)
        return found if len(found) == count and all(ready(p) for p in found) else None
    return wait_for(full, timeout, f"{count} ready pool pods in {namespace}", operator.tail, interval=0.3)


def status_of(cluster, namespace: str, container_id: str) -> dict:
    for body in containers(cluster, namespace):
        if (body.get("status") or {}).get("id") == container_id:
            return body["status"]
    raise AssertionError(f"no Container with id {container_id}")


def seed(tenant, cluster, operator) -> None:
    """A namespace gets pools once it holds a Container: the first create there is cold."""
    first = tenant.client.containers.create(name="seed")
    assert first.status == "running"
    wait_pool(cluster, tenant.namespace, POOL, operator)


def warm_container(gateway, cluster, operator, prefix: str, **params) -> tuple[Any, Any, dict]:
    """(tenant, container, its status) of a create in a fresh, pooled namespace, checked warm."""
    tenant = gateway.make_tenant(prefix)
    seed(tenant, cluster, operator)
    container = tenant.client.containers.create(**{"name": "warm", **params})
    status = status_of(cluster, tenant.namespace, container.id)
    assert status["start"] == "warm"
    return tenant, container, status


def test_a_pool_of_three_serves_three_warm_creates_then_cold_and_refills(gateway, pool_operator, cluster):
    tenant = gateway.make_tenant("warm")
    seed(tenant, cluster, pool_operator)
    pool_before = {p["metadata"]["name"] for p in pool_pods(cluster, tenant.namespace)}

    with ThreadPoolExecutor(4) as workers:
        created = list(workers.map(lambda i: tenant.client.containers.create(name=f"c{i}"), range(4)))
    assert [c.status for c in created] == ["running"] * 4
    statuses = [status_of(cluster, tenant.namespace, c.id) for c in created]
    assert sorted(s["start"] for s in statuses) == ["cold", "warm", "warm", "warm"], statuses
    warm_pods = {s["podName"] for s in statuses if s["start"] == "warm"}
    assert warm_pods <= pool_before  # the very pods that waited in the pool

    # A claimed pod is its Container's: labels its NetworkPolicy selects, owner, no pool label.
    by_name = {p["metadata"]["name"]: p for p in pods(cluster, tenant.namespace)}
    for status in statuses:
        pod = by_name[status["podName"]]
        assert names.LABEL_POOL not in pod["metadata"]["labels"]
        assert pod["metadata"]["labels"][names.LABEL_CONTAINER_ID] == status["id"]
        owners = [o for o in pod["metadata"]["ownerReferences"] if o.get("controller")]
        assert [o["kind"] for o in owners] == [names.KIND]
    assert len({s["podName"] for s in statuses}) == 4

    # Usable at once: running means its sidecar answers with the token the gateway knows.
    for container in created:
        uploaded = tenant.client.containers.files.create(container.id, file=("hello.txt", f"hi {container.id}".encode()))
        content = tenant.client.containers.files.content.retrieve(uploaded.id, container_id=container.id)
        assert content.read() == f"hi {container.id}".encode()

    refilled = wait_pool(cluster, tenant.namespace, POOL, pool_operator)
    assert not {p["metadata"]["name"] for p in refilled} & warm_pods  # a pod serves one Container, once

    events = [e for e in kubectl_json(cluster, tenant.namespace, "events")["items"]
              if e["involvedObject"].get("kind") == names.KIND and e["reason"] == "Created"]
    assert sum("claimed warm pod" in e["message"] for e in events) == 3


def test_twenty_concurrent_creates_against_a_pool_of_five(gateway, pool_operator, cluster):
    pool_operator.env["KONTAINERS_OPERATOR_WARM_POOL"] = json.dumps({"1g": 5})
    pool_operator.restart()
    try:
        tenant = gateway.make_tenant("burst")
        first = tenant.client.containers.create(name="seed")
        assert first.status == "running"
        wait_pool(cluster, tenant.namespace, 5, pool_operator)
        with ThreadPoolExecutor(20) as workers:
            created = list(workers.map(lambda i: tenant.client.containers.create(name=f"b{i}"), range(20)))
        assert [c.status for c in created] == ["running"] * 20
        statuses = [status_of(cluster, tenant.namespace, c.id) for c in created]
        starts = [s["start"] for s in statuses]
        assert starts.count("warm") == 5 and starts.count("cold") == 15, starts
        assert len({s["podName"] for s in statuses}) == 20
        claimed = [p for p in pods(cluster, tenant.namespace) if names.LABEL_POOL not in p["metadata"]["labels"]]
        assert len(claimed) == 21  # one per Container (the seed's included), none shared
    finally:
        pool_operator.env["KONTAINERS_OPERATOR_WARM_POOL"] = json.dumps({"1g": POOL})
        pool_operator.restart()


def test_a_deleted_warm_pod_is_replaced_by_a_pod_of_its_own(gateway, pool_operator, cluster):
    tenant, container, status = warm_container(gateway, cluster, pool_operator, "lost")
    cluster.kubectl("-n", tenant.namespace, "delete", "pod", status["podName"], "--wait=false")

    def replaced():
        now = status_of(cluster, tenant.namespace, container.id)
        return now if now.get("status") == "running" and now["podName"] != status["podName"] else None

    now = wait_for(replaced, 60, "a pod of its own for the Container", pool_operator.tail)
    assert now["start"] == "cold"
    body = next(b for b in containers(cluster, tenant.namespace) if b["status"]["id"] == container.id)
    assert now["podName"] == names.pod_name(body["metadata"]["name"], body["metadata"]["uid"])
    uploaded = tenant.client.containers.files.create(container.id, file=("again.txt", b"again"))
    assert tenant.client.containers.files.content.retrieve(uploaded.id, container_id=container.id).read() == b"again"


def test_deleting_a_warm_container_removes_its_pod(gateway, pool_operator, cluster):
    tenant, container, status = warm_container(gateway, cluster, pool_operator, "gone")
    tenant.client.containers.delete(container.id)
    wait_for(lambda: status["podName"] not in {p["metadata"]["name"] for p in pods(cluster, tenant.namespace)},
             60, "the warm pod to go with its Container", pool_operator.tail)


def test_an_operator_killed_during_a_burst_of_claims_loses_and_doubles_nothing(gateway, pool_operator, cluster):
    tenant = gateway.make_tenant("kill")
    seed(tenant, cluster, pool_operator)
    client = gateway.client(tenant.api_key, max_retries=8)
    with ThreadPoolExecutor(6) as workers:
        futures = [workers.submit(client.containers.create, name=f"k{i}") for i in range(6)]
        time.sleep(0.3)
        pool_operator.kill()
        time.sleep(1)
        pool_operator.start()
        created = [f.result() for f in futures]
    assert {c.status for c in created} == {"running"}

    def settled():
        items = containers(cluster, tenant.namespace)
        live = pods(cluster, tenant.namespace)
        claimed = [p for p in live if names.LABEL_POOL not in p["metadata"]["labels"]]
        pool = [p for p in live if names.LABEL_POOL in p["metadata"]["labels"]]
        return (items, claimed, pool) if (len(pool) == POOL and all(ready(p) for p in pool)
                                          and len(claimed) == len(items)) else None

    items, claimed, pool = wait_for(settled, 90, "one pod per Container and a full pool", pool_operator.tail)
    assert len(items) == 7
    owners = [next(o["uid"] for o in p["metadata"]["ownerReferences"] if o.get("controller")) for p in claimed]
    assert sorted(owners) == sorted(b["metadata"]["uid"] for b in items)  # exactly one pod each
    assert all(not p["metadata"].get("ownerReferences") for p in pool)
    for body in items:
        assert body["status"]["status"] == "running"
        assert body["status"]["podName"] in {p["metadata"]["name"] for p in claimed}


def test_an_idle_warm_container_expires_and_its_pod_goes(gateway, pool_operator, cluster):
    tenant, container, _ = warm_container(gateway, cluster, pool_operator, "idle", name="idle",
                                          expires_after={"anchor": "last_active_at", "minutes": 1})

    def expired():
        now = status_of(cluster, tenant.namespace, container.id)
        return now if now.get("status") == "expired" else None

    now = wait_for(expired, 120, "the warm container to expire", pool_operator.tail, interval=1)
    assert not now.get("podName")  # an expired status names no pod, so the pod is found by its id label
    wait_for(lambda: not pods(cluster, tenant.namespace, f"{names.LABEL_CONTAINER_ID}={container.id}"), 60,
             "the warm pod to go", pool_operator.tail)
    assert tenant.client.containers.retrieve(container.id).status == "expired"
