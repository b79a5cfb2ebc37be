"""`helm install` of the chart with the locally built images: kontainers runs as pods on the real
node, exactly as on a user's cluster, and the openai SDK works against the in-cluster gateway
(reached through `kubectl port-forward`, as the chart's NOTES say).

The release serves one tenant namespace; the session's own operator is paused meanwhile.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import yaml

from fixtures.cluster import RealNode
from fixtures.operator import wait_for
from kontainers.cluster import images
from kontainers.cluster.process import Component, free_port

pytestmark = pytest.mark.cluster

RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


@pytest.fixture(scope="module")
def release(cluster, real_node: RealNode, container_crd, no_session_operator, tmp_path_factory) -> Iterator[dict]:
    workdir = tmp_path_factory.mktemp("chart-real-node")
    node_images = cluster.control_plane.images if cluster.control_plane else images.planned_images()
    suffix = uuid.uuid4().hex[:6]
    ns, tenant = f"kr-{suffix}", f"kr-{suffix}-tenant"
    for name in (ns, tenant):
        cluster.kubectl("create", "namespace", name)
        cluster.kubectl("label", "namespace", name, RESTRICTED)
    # The Files store's volume: a PersistentVolume of this machine (no provisioner here).
    store = workdir / "files-store"
    store.mkdir()
    os.chown(store, 10001, 10001)
    claim = "kontainers-files"
    cluster.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"files-{suffix}"},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain",
                  "hostPath": {"path": str(store), "type": "Directory"},
                  "claimRef": {"namespace": ns, "name": claim}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": ns},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": f"files-{suffix}",
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]}))
    repository, tag = node_images.kontainers.name.rsplit(":", 1)
    placement = {"nodeSelector": real_node.node_selector, "tolerations": real_node.tolerations}
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "watchNamespaces": [tenant],
        "sandbox": {"image": node_images.sandbox.name, **placement,
                    "sizes": {"1g": {"memoryRequest": "256Mi", "cpuRequest": "10m", "cpuLimit": "1"}}},
        "operator": placement, "gateway": placement, "egress": placement,
        "files": {"persistence": {"existingClaim": claim}},
    }
    values_file = workdir / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    started = time.monotonic()
    cluster.helm("install", ns, str(Path(__file__).resolve().parents[2] / "charts" / "kontainers"),
                 "--namespace", ns, "--take-ownership", "-f", str(values_file), "--wait", "--timeout", "300s")
    print(f"helm install --wait: all kontainers pods Ready in {time.monotonic() - started:.1f}s")
    try:
        yield {"namespace": ns, "tenant": tenant, "workdir": workdir}
    finally:
        cluster.helm("uninstall", ns, "--namespace", ns, "--wait", "--timeout", "120s", check=False)
        for name in (tenant, ns):
            cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
        cluster.kubectl("delete", "pv", f"files-{suffix}", "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="module")
def gateway_url(cluster, release) -> Iterator[str]:
    """The in-cluster gateway through `kubectl port-forward`, as the chart's NOTES tell users."""
    service = next(name for name in cluster.kubectl("-n", release["namespace"], "get", "services", "-o", "name"
                                                    ).stdout.split() if name.endswith("-gateway"))
    port = free_port()
    forward = Component("port-forward", [cluster.tool("kubectl"), "--kubeconfig", cluster.kubeconfig, "-n",
                                         release["namespace"], "port-forward", "--address", "127.0.0.1",
                                         service, f"{port}:80"],
                        release["workdir"] / "port-forward.log", dict(os.environ))
    forward.start()
    try:
        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        wait_for(answers, 60, "the port-forward", forward.tail)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        forward.stop()


def test_kontainers_runs_as_pods_under_restricted(cluster, release) -> None:
    pods = json.loads(cluster.kubectl("-n", release["namespace"], "get", "pods", "-o", "json").stdout)["items"]
    components = sorted(p["metadata"]["labels"].get("app.kubernetes.io/component", "") for p in pods)
    assert components == ["egress", "gateway", "operator"], components
    for pod in pods:
        assert pod["spec"]["nodeName"] == "kontainers-node" or not cluster.is_local
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", pod["metadata"]["name"]
        assert all(s["restartCount"] == 0 for s in pod["status"]["containerStatuses"]), pod["status"]
    labels = json.loads(cluster.kubectl("get", "namespace", release["namespace"], "-o", "json").stdout
                        )["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_sdk_works_against_the_in_cluster_gateway(cluster, release, gateway_url) -> None:
    minted = subprocess.run(
        [sys.executable, "-m", "kontainers.cli", "apikey", "create", "--namespace", release["tenant"],
         "--secret-namespace", release["namespace"], "--kubeconfig", cluster.kubeconfig],
        capture_output=True, text=True, timeout=60)
    assert minted.returncode == 0, minted.stderr
    client = openai.OpenAI(base_url=gateway_url, api_key=minted.stdout.strip(), max_retries=8, timeout=120)
    # The gateway picks the new key up from its watch of the keys Secret.
    wait_for(lambda: _accepted(client), 60, "the in-cluster gateway to accept the new key")
    container = client.containers.create(name="in cluster", network_policy={
        "type": "allowlist", "allowed_domains": ["example.test"]})
    assert container.status == "running"
    uploaded = client.containers.files.create(container.id, file=("hello.txt", b"hello from the SDK"))
    assert client.containers.files.content.retrieve(uploaded.id, container_id=container.id
                                                    ).read() == b"hello from the SDK"
    pods = json.loads(cluster.kubectl("-n", release["tenant"], "get", "pods", "-l", "!kontainers.dev/pool", "-o", "json"
                                      ).stdout)["items"]
    assert [p["status"]["phase"] for p in pods] == ["Running"]  # the warm pool's pods aside (allowlist is cold)
    # The allowlist sandbox was wired to the in-cluster egress proxy by its Service address.
    env = {e["name"]: e.get("value", "") for e in pods[0]["spec"]["containers"][0]["env"]}
    proxy = env.get("HTTPS_PROXY") or env.get("https_proxy")
    assert (proxy or "").startswith("http://10.96."), sorted(env)  # the Service IP, pinned by the operator
    client.containers.delete(container.id)


def _accepted(client: openai.OpenAI) -> bool:
    try:
        client.containers.list(limit=1)
        return True
    except openai.AuthenticationError:
        return False
