"""Every isolation promise of a sandbox, observed on a node where its processes really run.

The operator, gateway and egress proxy run as local processes; the sandbox pods run on the real
node (containerd + runc, CNI bridge, kube-router enforcing NetworkPolicies) from the locally built
images. Everything goes through the public interfaces: the openai SDK, kubectl, the API server.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.gateway import Gateway, Tenant
from fixtures.operator import wait_for
from fixtures.real_node import Stack
from kontainers.resources import names

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("gateway_logs")]

GiB = 1 << 30


@pytest.fixture(scope="module")
def tenant(gateway: Gateway, stack: Stack) -> Tenant:
    return gateway.make_tenant("real")


# --- helpers ---------------------------------------------------------------------------------


def pod_of(cluster, namespace: str, container_id: str) -> dict:
    pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", f"{names.LABEL_CONTAINER_ID}={container_id}",
                                      "-o", "json").stdout)["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, f"expected one pod of {container_id}, found {[p['metadata']['name'] for p in live]}"
    return live[0]


def sh(cluster, namespace: str, pod: str, script: str, container: str = "sandbox", check: bool = True):
    """`kubectl exec` of a shell script in one of the pod's containers."""
    return cluster.kubectl("-n", namespace, "exec", pod, "-c", container, "--", "sh", "-c", script, check=check)


def running_container(tenant: Tenant, cluster, **params) -> tuple[str, dict]:
    container = tenant.client.containers.create(name=params.pop("name", "real"), **params)
    # The create's wait is bounded: the first sandbox of a fresh node (image layers unpacked) can
    # outlast it and answer `pending`; it must then become `running` on its own.
    if container.status != "running":
        assert container.status == "pending", container.status
        wait_for(lambda: tenant.client.containers.retrieve(container.id).status == "running", 120,
                 f"{container.id} to be running")
    pod = pod_of(cluster, tenant.namespace, container.id)
    assert pod["spec"]["nodeName"] == "kontainers-node" or not cluster.is_local
    assert pod["status"]["phase"] == "Running"
    states = {s["name"]: s.get("state", {}) for s in pod["status"]["containerStatuses"]}
    assert "running" in states["sandbox"] and "running" in states["files"], states
    return container.id, pod


def plain_pod(cluster, namespace: str, stack: Stack, name: str = "plain") -> str:
    """A pod of the tenant's namespace that no kontainers policy selects (restricted-compliant)."""
    spec = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeSelector": stack.real_node.node_selector, "tolerations": stack.real_node.tolerations,
            "automountServiceAccountToken": False, "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": stack.images.sandbox.name, "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "infinity"],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(spec))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s")
    return name


CONNECT = ("python3 -c \"import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); "
           "print('connected')\" {host} {port}")


def can_connect(cluster, namespace: str, pod: str, host: str, port: int, container: str = "sandbox") -> bool:
    done = sh(cluster, namespace, pod, CONNECT.format(host=host, port=port), container=container, check=False)
    return done.returncode == 0 and "connected" in done.stdout


@pytest.fixture(scope="module")
def host_server(stack: Stack) -> Iterator[tuple[str, int]]:
    """A TCP server on this host's address on the pods' bridge (never beyond this machine)."""
    if not stack.real_node.host_ip:
        pytest.fail("the host-server checks need the local real node (this host's bridge address)")
    listener = socket.create_server((stack.real_node.host_ip, 0))
    listener.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield stack.real_node.host_ip, listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


# --- the sandbox itself ----------------------------------------------------------------------


def test_sandbox_runs_hardened(cluster, tenant: Tenant) -> None:
    container_id, pod = running_container(tenant, cluster)
    name = pod["metadata"]["name"]
    assert sh(cluster, tenant.namespace, name, "id -u").stdout.strip() == "10001"
    read_only = sh(cluster, tenant.namespace, name, "touch /x", check=False)
    assert read_only.returncode != 0 and "Read-only file system" in read_only.stderr
    assert sh(cluster, tenant.namespace, name, "echo probe > /mnt/data/probe.txt && cat /mnt/data/probe.txt"
              ).stdout.strip() == "probe"
    no_token = sh(cluster, tenant.namespace, name, "ls /var/run/secrets/kubernetes.io/serviceaccount", check=False)
    assert no_token.returncode != 0
    status = dict(line.split(":\t", 1) for line in sh(cluster, tenant.namespace, name, "cat /proc/1/status"
                                                       ).stdout.splitlines() if ":\t" in line)
    assert status["Seccomp"].strip() == "2"  # filter mode: RuntimeDefault
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == int(status["CapBnd"], 16) == 0
    # /mnt/data is shared with the files sidecar: the file written in the sandbox is listed.
    listed = {f.path: f for f in tenant.client.containers.files.list(container_id)}
    assert listed["/mnt/data/probe.txt"].source == "assistant"


def test_file_written_in_the_sandbox_downloads_byte_identical(cluster, tenant: Tenant) -> None:
    container_id, pod = running_container(tenant, cluster)
    name = pod["metadata"]["name"]
    digest = sh(cluster, tenant.namespace, name,
                "head -c 3000000 /dev/urandom > /mnt/data/out.bin && sha256sum /mnt/data/out.bin").stdout.split()[0]
    file = next(f for f in tenant.client.containers.files.list(container_id) if f.path == "/mnt/data/out.bin")
    assert file.source == "assistant" and file.bytes == 3_000_000
    content = tenant.client.containers.files.content.retrieve(file.id, container_id=container_id).read()
    assert hashlib.sha256(content).hexdigest() == digest
    # And the other way: an upload through the API is readable by the sandbox's processes.
    uploaded = tenant.client.containers.files.create(container_id, file=("in.txt", b"from the API\n"))
    assert sh(cluster, tenant.namespace, name, f"cat {uploaded.path}").stdout == "from the API\n"


def test_memory_limit_kills_a_process_past_it_and_spares_one_below(cluster, tenant: Tenant) -> None:
    container_id, pod = running_container(tenant, cluster, memory_limit="1g")
    name = pod["metadata"]["name"]
    limit = sh(cluster, tenant.namespace, name,
               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max").stdout
    assert int(limit) == GiB
    small = sh(cluster, tenant.namespace, name, "python3 -c \"b = b'x' * (512 << 20); print(len(b))\"", check=False)
    assert small.returncode == 0 and small.stdout.strip() == str(512 << 20)
    big = sh(cluster, tenant.namespace, name, "python3 -c \"b = b'x' * (1536 << 20); print(len(b))\"", check=False)
    assert big.returncode == 137, (big.returncode, big.stderr)
    # The sandbox survives its process: the container keeps answering.
    assert sh(cluster, tenant.namespace, name, "echo alive").stdout.strip() == "alive"
    assert tenant.client.containers.retrieve(container_id).status == "running"


# --- network ---------------------------------------------------------------------------------


def test_disabled_reaches_nothing(cluster, tenant: Tenant, stack: Stack, host_server) -> None:
    host, port = host_server
    _, pod = running_container(tenant, cluster, name="no network")
    other_id, other = running_container(tenant, cluster, name="neighbour")
    plain = plain_pod(cluster, tenant.namespace, stack, name="plain-disabled")
    # The control: a pod without a kontainers policy reaches the host server.
    assert can_connect(cluster, tenant.namespace, plain, host, port, container="main")
    name = pod["metadata"]["name"]
    assert not can_connect(cluster, tenant.namespace, name, host, port)
    assert not can_connect(cluster, tenant.namespace, name, other["status"]["podIP"], 8081)
    assert not can_connect(cluster, tenant.namespace, name, stack.real_node.host_ip or host, stack.egress.port)


def test_allowlist_reaches_only_the_egress_proxy(cluster, tenant: Tenant, stack: Stack, host_server) -> None:
    host, port = host_server
    _, pod = running_container(tenant, cluster, name="allowlist", network_policy={
        "type": "allowlist", "allowed_domains": ["api.allowed.test"]})
    name = pod["metadata"]["name"]
    allowed = sh(cluster, tenant.namespace, name,
                 f"curl -sS --max-time 20 https://api.allowed.test:{stack.https_port}/from-sandbox", check=False)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["path"] == "/from-sandbox"
    refused = sh(cluster, tenant.namespace, name,
                 f"curl -sS --max-time 20 https://denied.test:{stack.https_port}/", check=False)
    assert refused.returncode != 0 and "403" in refused.stderr
    # Around the proxy: nothing else on the host, no other pod.
    assert not can_connect(cluster, tenant.namespace, name, host, port)
    plain = plain_pod(cluster, tenant.namespace, stack, name="plain-allowlist")
    plain_ip = json.loads(cluster.kubectl("-n", tenant.namespace, "get", "pod", plain, "-o", "json").stdout
                          )["status"]["podIP"]
    assert not can_connect(cluster, tenant.namespace, name, plain_ip, 8081)


def test_only_the_gateway_reaches_the_sidecar(cluster, tenant: Tenant, stack: Stack) -> None:
    container_id, pod = running_container(tenant, cluster, name="guarded")
    plain = plain_pod(cluster, tenant.namespace, stack, name="plain-sidecar")
    assert not can_connect(cluster, tenant.namespace, plain, pod["status"]["podIP"], 8081, container="main")
    # The gateway (from this host) does: a file goes in and comes back out through the sidecar.
    uploaded = tenant.client.containers.files.create(container_id, file=("g.txt", b"through the gateway"))
    assert tenant.client.containers.files.content.retrieve(uploaded.id, container_id=container_id
                                                           ).read() == b"through the gateway"


# --- healing ---------------------------------------------------------------------------------


def test_deleted_sandbox_pod_comes_back_running(cluster, tenant: Tenant) -> None:
    container_id, pod = running_container(tenant, cluster, name="phoenix")
    cluster.kubectl("-n", tenant.namespace, "delete", "pod", pod["metadata"]["name"], "--wait=false")

    def replaced() -> dict | None:
        pods = json.loads(cluster.kubectl("-n", tenant.namespace, "get", "pods", "-l",
                                          f"{names.LABEL_CONTAINER_ID}={container_id}", "-o", "json").stdout)["items"]
        fresh = [p for p in pods if p["metadata"]["uid"] != pod["metadata"]["uid"]
                 and p.get("status", {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        return fresh[0] if fresh else None

    new = wait_for(replaced, 90, "the sandbox pod to be recreated and running")
    assert sh(cluster, tenant.namespace, new["metadata"]["name"], "echo back").stdout.strip() == "back"
    wait_for(lambda: tenant.client.containers.retrieve(container_id).status == "running", 60, "status running")


def test_operator_killed_while_creating_makes_exactly_one_pod_each(cluster, make_namespace_module, stack: Stack) -> None:
    namespace = make_namespace_module(prefix="burst")
    count = 20
    manifests = "\n---\n".join(json.dumps({
        "apiVersion": names.API_VERSION, "kind": names.KIND,
        "metadata": {"name": f"burst-{i}", "namespace": namespace}, "spec": {"name": f"burst {i}"},
    }) for i in range(count))
    cluster.kubectl("apply", "-f", "-", input=manifests)

    def pods() -> list[dict]:
        return json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]

    wait_for(lambda: len(pods()) >= 1, 60, "the first sandbox pod", stack.operator.tail)
    stack.operator.kill()
    print(f"operator killed with {len(pods())} of {count} pods made")
    stack.operator.start("--egress-namespace", stack.egress.namespace)

    def all_running() -> bool:
        current = pods()
        return len(current) >= count and all(p.get("status", {}).get("phase") == "Running" for p in current)

    wait_for(all_running, 240, f"{count} running sandbox pods", stack.operator.tail, interval=1.0)
    time.sleep(3)  # a duplicate made late by a second reconcile would show up now
    current = pods()
    owners = [next(o["name"] for o in p["metadata"]["ownerReferences"]) for p in current]
    assert len(current) == count and sorted(owners) == sorted(f"burst-{i}" for i in range(count))

    def containers_running() -> bool:
        items = json.loads(cluster.kubectl("-n", namespace, "get", "containers", "-o", "json").stdout)["items"]
        return len(items) == count and all(c.get("status", {}).get("status") == "running" for c in items)

    wait_for(containers_running, 60, "every Container's status running", stack.operator.tail)


def test_node_runs_no_leftovers_of_deleted_sandboxes(cluster, make_namespace_module, stack: Stack) -> None:
    """Deleting Containers stops their processes on the node (no orphaned sandboxes)."""
    namespace = make_namespace_module(prefix="gone")
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": names.API_VERSION, "kind": names.KIND,
        "metadata": {"name": "ephemeral", "namespace": namespace}, "spec": {"name": "ephemeral"}}))
    wait_for(lambda: cluster.kubectl("-n", namespace, "get", "container", "ephemeral", "-o",
                                     "jsonpath={.status.status}").stdout == "running", 90, "running", stack.operator.tail)
    if cluster.control_plane is None:
        pytest.skip("an external cluster's node cgroups cannot be read from here")
    pod = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"][0]
    uid = pod["metadata"]["uid"]
    cgroups = list(Path("/sys/fs/cgroup/pids").glob(f"kubepods*/**/pod{uid}"))
    assert cgroups, "the pod's cgroup exists while it runs"
    cluster.kubectl("-n", namespace, "delete", "container", "ephemeral", "--wait=true", "--timeout=60s")
    wait_for(lambda: not any(c.exists() for c in cgroups), 60, "the pod's cgroup to go")


def test_an_upgrade_keeps_running_sandboxes_and_their_files(cluster, tenant: Tenant, stack: Stack) -> None:
    """New images in the operator's settings (an upgrade) apply to new pods; running sandboxes keep
    their pod, so /mnt/data (an emptyDir) and every file in it survive byte-identical."""
    kept = {}
    for size in ("1g", "4g"):
        container_id, pod = running_container(tenant, cluster, name=f"upgrade-{size}", memory_limit=size)
        note = f"kept in the {size} sandbox\n".encode()
        uploaded = tenant.client.containers.files.create(container_id, file=("notes.txt", note))
        written = sh(cluster, tenant.namespace, pod["metadata"]["name"],
                     "head -c 2000000 /dev/urandom > /mnt/data/made.bin && sha256sum /mnt/data/*").stdout
        kept[container_id] = (pod["metadata"]["uid"], uploaded.id, note, written)
    original = dict(stack.operator.env)
    stack.operator.env.update({"KONTAINERS_OPERATOR_SIDECAR_IMAGE": stack.images.kontainers.name + "-next",
                               "KONTAINERS_OPERATOR_SANDBOX_IMAGE": stack.images.sandbox.name + "-next"})
    try:
        stack.operator.restart("--egress-namespace", stack.egress.namespace)
        # A container made now gets the new template (its images cannot be pulled: no matter here).
        fresh = tenant.client.containers.create(name="after-upgrade")
        wait_for(lambda: cluster.kubectl("-n", tenant.namespace, "get", "pods", "-l",
                                         f"{names.LABEL_CONTAINER_ID}={fresh.id}", "-o", "name").stdout.strip(),
                 60, "the new container's pod", stack.operator.tail)
        images_of_fresh = {c["name"]: c["image"] for c in pod_of(cluster, tenant.namespace, fresh.id)["spec"]["containers"]}
        assert images_of_fresh == {"sandbox": stack.images.sandbox.name + "-next",
                                   "files": stack.images.kontainers.name + "-next"}
        time.sleep(5)  # the restarted operator has resumed every Container by now
        for container_id, (pod_uid, upload_id, note, written) in kept.items():
            pod = pod_of(cluster, tenant.namespace, container_id)
            assert pod["metadata"]["uid"] == pod_uid and pod["status"]["phase"] == "Running"
            assert tenant.client.containers.retrieve(container_id).status == "running"
            assert sh(cluster, tenant.namespace, pod["metadata"]["name"], "sha256sum /mnt/data/*").stdout == written
            content = tenant.client.containers.files.content.retrieve(upload_id, container_id=container_id).read()
            assert content == note
        tenant.client.containers.delete(fresh.id)
    finally:
        stack.operator.env.clear()
        stack.operator.env.update(original)
        stack.operator.restart("--egress-namespace", stack.egress.namespace)
