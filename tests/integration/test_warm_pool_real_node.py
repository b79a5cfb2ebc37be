"""The warm pool on the real node: unclaimed pods reach nothing, a claimed one is held by its
Container's policy, and its files and skills are in before the create answers running.

The real-node stack's operator runs with a pool of 2 for 1g for this module.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import pytest

from fixtures.gateway import Gateway, Tenant
from fixtures.operator import wait_for
from fixtures.real_node import Stack
from kontainers.resources import names

from test_real_node import can_connect, host_server, plain_pod, sh  # noqa: F401  (host_server: a fixture)

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("gateway_logs")]

POOL = 2


@pytest.fixture(scope="module")
def warm_stack(stack: Stack) -> Iterator[Stack]:
    operator = stack.operator
    before = dict(operator.env)
    operator.env.update({"KONTAINERS_OPERATOR_WARM_POOL": json.dumps({"1g": POOL}),
                         "KONTAINERS_OPERATOR_WARM_POOL_INTERVAL": "0.5"})
    operator.restart("--egress-namespace", stack.egress.namespace)
    yield stack
    operator.env.clear()
    operator.env.update(before)
    operator.restart("--egress-namespace", stack.egress.namespace)


@pytest.fixture(scope="module")
def tenant(gateway: Gateway, warm_stack: Stack, cluster) -> Tenant:
    tenant = gateway.make_tenant("warm-real")
    seed = tenant.client.containers.create(name="seed")  # the namespace has a Container: it gets pools
    if seed.status != "running":
        wait_for(lambda: tenant.client.containers.retrieve(seed.id).status == "running", 120, "the seed to run")
    return tenant


def pool_pods(cluster, namespace: str) -> list[dict]:
    found = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", f"{names.LABEL_POOL}=1g",
                                       "-o", "json").stdout)["items"]
    return [p for p in found if not p["metadata"].get("deletionTimestamp")]


def wait_pool(cluster, tenant: Tenant, stack: Stack) -> list[dict]:
    def full():
        found = pool_pods(cluster, tenant.namespace)
        ready = [p for p in found if {c["type"]: c["status"] for c in p["status"].get("conditions") or []
                                      }.get("Ready") == "True"]
        return ready if len(ready) == POOL else None
    return wait_for(full, 180, f"{POOL} ready pool pods", stack.operator.tail, interval=0.5)


def warm_container(cluster, tenant: Tenant, stack: Stack, **params) -> tuple[str, str]:
    """(container id, pod name) of a create that claimed a warm pod."""
    wait_pool(cluster, tenant, stack)
    container = tenant.client.containers.create(name=params.pop("name", "warm"), **params)
    assert container.status == "running"
    body = next(b for b in json.loads(cluster.kubectl("-n", tenant.namespace, "get", names.PLURAL, "-o", "json"
                                                      ).stdout)["items"] if b["status"].get("id") == container.id)
    assert body["status"]["start"] == "warm", body["status"]
    return container.id, body["status"]["podName"]


def test_unclaimed_pool_pods_reach_nothing_not_even_the_egress_proxy(cluster, tenant: Tenant, warm_stack: Stack,
                                                                     host_server) -> None:
    host, port = host_server
    plain = plain_pod(cluster, tenant.namespace, warm_stack, name="plain-pool")
    assert can_connect(cluster, tenant.namespace, plain, host, port, container="main")  # the control
    pod = wait_pool(cluster, tenant, warm_stack)[0]
    name = pod["metadata"]["name"]
    assert not can_connect(cluster, tenant.namespace, name, host, port)
    assert not can_connect(cluster, tenant.namespace, name, warm_stack.real_node.host_ip or host, warm_stack.egress.port)
    assert not can_connect(cluster, tenant.namespace, plain, pod["status"]["podIP"], 8081, container="main")


def test_a_claimed_disabled_container_reaches_nothing(cluster, tenant: Tenant, warm_stack: Stack, host_server) -> None:
    host, port = host_server
    _, pod = warm_container(cluster, tenant, warm_stack, name="warm disabled")
    assert not can_connect(cluster, tenant.namespace, pod, host, port)
    assert not can_connect(cluster, tenant.namespace, pod, warm_stack.real_node.host_ip or host, warm_stack.egress.port)


def test_an_allowlist_container_is_cold_and_reaches_only_its_domains(cluster, tenant: Tenant, warm_stack: Stack) -> None:
    wait_pool(cluster, tenant, warm_stack)
    container = tenant.client.containers.create(name="allowlist", network_policy={
        "type": "allowlist", "allowed_domains": ["api.allowed.test"]})
    if container.status != "running":
        wait_for(lambda: tenant.client.containers.retrieve(container.id).status == "running", 120, "allowlist running")
    body = next(b for b in json.loads(cluster.kubectl("-n", tenant.namespace, "get", names.PLURAL, "-o", "json"
                                                      ).stdout)["items"] if b["status"].get("id") == container.id)
    assert body["status"]["start"] == "cold"  # its pod carries the proxy's wiring: no pool pod fits
    pod = body["status"]["podName"]
    allowed = sh(cluster, tenant.namespace, pod,
                 f"curl -sS --max-time 20 https://api.allowed.test:{warm_stack.https_port}/warm", check=False)
    assert allowed.returncode == 0, allowed.stderr
    refused = sh(cluster, tenant.namespace, pod,
                 f"curl -sS --max-time 20 https://denied.test:{warm_stack.https_port}/", check=False)
    assert refused.returncode != 0 and "403" in refused.stderr


def skill_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("greeter/SKILL.md", "---\nname: greeter\ndescription: Says hello\n---\nSay hello.\n")
        archive.writestr("greeter/hello.py", "print('hello')\n")
    return buffer.getvalue()


def test_file_ids_and_skills_are_in_before_a_warm_create_answers(cluster, tenant: Tenant, warm_stack: Stack) -> None:
    stored = tenant.client.files.create(file=("data.csv", b"a,b\n1,2\n"), purpose="user_data")
    skill = tenant.client.skills.create(files=[("greeter.zip", skill_zip(), "application/zip")])
    _, pod = warm_container(cluster, tenant, warm_stack, name="warm inputs", file_ids=[stored.id],
                            skills=[{"type": "skill_reference", "skill_id": skill.id}])
    # The create answered running: both are there already, without waiting.
    listed = sh(cluster, tenant.namespace, pod, "cat /mnt/data/data.csv && cat /mnt/skills/greeter/hello.py").stdout
    assert listed == "a,b\n1,2\nprint('hello')\n"
