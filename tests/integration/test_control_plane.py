"""The local control plane is a real Kubernetes: admission, controllers, scheduler, RBAC, Helm."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kontainers.cluster import build
from kontainers.cluster.launcher import ControlPlane
from kontainers.cluster.pins import KUBERNETES_VERSION

pytestmark = pytest.mark.cluster

TINY_CHART = Path(__file__).parent / "fixtures" / "tiny-chart"

RESTRICTED_SECURITY = {
    "pod": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
    "container": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
}


def pod_manifest(name: str, namespace: str, *, privileged: bool = False) -> str:
    container = {"name": "main", "image": "registry.example/app:1"}
    spec: dict = {"containers": [container]}
    if privileged:
        container["securityContext"] = {"privileged": True}
    else:
        spec["securityContext"] = RESTRICTED_SECURITY["pod"]
        container["securityContext"] = RESTRICTED_SECURITY["container"]
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                       "spec": spec})


def wait_until(predicate, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s: {message}")
        time.sleep(0.5)


def test_restricted_namespace_rejects_privileged_pod_and_runs_a_compliant_one(cluster, namespace):
    rejected = cluster.kubectl("apply", "-f", "-", input=pod_manifest("privileged", namespace, privileged=True),
                               check=False)
    assert rejected.returncode != 0
    # The API server's own PodSecurity admission message.
    assert 'violates PodSecurity "restricted:latest"' in rejected.stderr
    assert "privileged" in rejected.stderr
    assert cluster.kubectl("-n", namespace, "get", "pod", "privileged", check=False).returncode != 0

    cluster.kubectl("apply", "-f", "-", input=pod_manifest("compliant", namespace))
    cluster.kubectl("-n", namespace, "wait", "pod/compliant", "--for=jsonpath={.status.phase}=Running",
                    "--timeout=60s")
    pod = json.loads(cluster.kubectl("-n", namespace, "get", "pod", "compliant", "-o", "json").stdout)
    scheduled = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert scheduled["status"] == "True"
    assert pod["spec"]["nodeName"], "the scheduler bound the pod to a node"
    assert pod["status"]["podIP"]
    if cluster.is_local:
        node = json.loads(cluster.kubectl("get", "node", pod["spec"]["nodeName"], "-o", "json").stdout)
        assert node["metadata"]["annotations"].get("kwok.x-k8s.io/node") == "fake"
        pod_ip = ipaddress.ip_address(pod["status"]["podIP"])
        assert pod_ip in ipaddress.ip_network(cluster.pod_cidr)
        assert pod_ip in ipaddress.ip_network(node["spec"]["podCIDR"])
        assert pod_ip.is_loopback


def test_garbage_collector_deletes_dependents_of_a_deleted_owner(cluster, make_namespace):
    namespace = make_namespace(restricted=False)
    cluster.kubectl("-n", namespace, "create", "configmap", "owner")
    owner_uid = cluster.kubectl("-n", namespace, "get", "configmap", "owner", "-o", "jsonpath={.metadata.uid}").stdout
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(dependent))
    cluster.kubectl("-n", namespace, "delete", "configmap", "owner", "--cascade=background")

    def dependent_gone() -> bool:
        return cluster.kubectl("-n", namespace, "get", "configmap", "dependent", check=False).returncode != 0

    wait_until(dependent_gone, 60, "the garbage collector did not delete the dependent ConfigMap")


def test_helm_installs_and_uninstalls_a_chart(cluster, namespace):
    cluster.helm("install", "demo", str(TINY_CHART), "--namespace", namespace, "--set", "greeting=hi",
                 "--wait", "--timeout", "120s")
    releases = json.loads(cluster.helm("list", "--namespace", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]
    greeting = cluster.kubectl("-n", namespace, "get", "configmap", "demo-tiny", "-o", "jsonpath={.data.greeting}")
    assert greeting.stdout == "hi"
    ready = cluster.kubectl("-n", namespace, "get", "deployment", "demo-tiny", "-o",
                            "jsonpath={.status.readyReplicas}")
    assert ready.stdout == "1"

    cluster.helm("uninstall", "demo", "--namespace", namespace, "--wait", "--timeout", "120s")
    assert json.loads(cluster.helm("list", "--namespace", namespace, "-o", "json").stdout) == []
    leftovers = cluster.kubectl("-n", namespace, "get", "configmap,deployment", "-l", "app.kubernetes.io/instance=demo",
                                "-o", "name")
    assert leftovers.stdout.strip() == ""


def test_rbac_forbids_a_service_account_without_permissions(cluster, namespace):
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "nobody")
    cluster.kubectl("-n", namespace, "create", "configmap", "visible")
    as_nobody = ("--as", f"system:serviceaccount:{namespace}:nobody")

    denied = cluster.kubectl("-n", namespace, "get", "configmap", "visible", *as_nobody, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert f'User "system:serviceaccount:{namespace}:nobody" cannot get resource "configmaps"' in denied.stderr

    # The same request succeeds once a Role grants it: the denial came from RBAC, not a broken client.
    cluster.kubectl("-n", namespace, "create", "role", "read-configmaps", "--verb=get", "--resource=configmaps")
    cluster.kubectl("-n", namespace, "create", "rolebinding", "nobody-reads", "--role=read-configmaps",
                    f"--serviceaccount={namespace}:nobody")
    wait_until(
        lambda: cluster.kubectl("-n", namespace, "get", "configmap", "visible", *as_nobody, check=False).returncode == 0,
        30, "the RoleBinding never took effect",
    )
    still_denied = cluster.kubectl("-n", namespace, "get", "secrets", *as_nobody, check=False)
    assert "Forbidden" in still_denied.stderr


async def test_kube_api_fixture_reaches_the_api_server(cluster, kube_api):
    from kubernetes_asyncio import client

    version = await client.VersionApi(kube_api).get_code()
    assert version.git_version.startswith("v1.")
    nodes = await client.CoreV1Api(kube_api).list_node()
    assert nodes.items
    if cluster.is_local:
        assert version.git_version == KUBERNETES_VERSION
        assert {n.metadata.name for n in nodes.items} >= set(cluster.control_plane.node_cidrs)
    assert cluster.server.startswith("https://")


def test_a_restarted_state_dir_never_gives_a_new_pod_the_ip_of_a_kept_one(tmp_path):
    # kwok forgets which pod IPs it handed out; pods kept from the previous run must not collide.
    def running_ip(control_plane: ControlPlane, name: str) -> str:
        kubectl = [str(control_plane.bin_dir / "kubectl"), "--kubeconfig", str(control_plane.kubeconfig)]
        subprocess.run([*kubectl, "apply", "-f", "-"], input=pod_manifest(name, "default"), text=True, check=True,
                       capture_output=True)
        ip = ""

        def has_ip() -> bool:
            nonlocal ip
            out = subprocess.run([*kubectl, "get", "pod", name, "-o", "json"], capture_output=True, text=True,
                                 check=False).stdout
            status = json.loads(out or "{}").get("status", {})
            ip = status.get("podIP", "") if status.get("phase") == "Running" else ""
            return bool(ip)

        wait_until(has_ip, 60, f"pod {name} Running with an IP")
        return ip

    pod_cidr = "127.69.0.0/16"  # outside the sessions' 127.70-127.127 and kontainers dev's 127.66
    with ControlPlane(tmp_path / "state", pod_cidr=pod_cidr) as control_plane:
        first = running_ip(control_plane, "kept")
    with ControlPlane(tmp_path / "state", pod_cidr=pod_cidr) as control_plane:
        kubectl = [str(control_plane.bin_dir / "kubectl"), "--kubeconfig", str(control_plane.kubeconfig)]
        kept = subprocess.run([*kubectl, "get", "pod", "kept", "-o", "json"], capture_output=True, text=True,
                              check=False)
        second = running_ip(control_plane, "new")
        assert second != first or kept.returncode != 0, "a kept pod and a new pod share an IP"
        pods = json.loads(subprocess.run([*kubectl, "get", "pods", "-A", "-o", "json"], capture_output=True,
                                         text=True, check=True).stdout)["items"]
        ips = [pod["status"].get("podIP") for pod in pods if pod["status"].get("podIP")]
        assert len(ips) == len(set(ips)), f"pod IPs collide: {ips}"


def _listening_ports(pid: int) -> list[int]:
    """The ports a component was told to listen on, from its command line."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    ports = []
    for arg in args:
        name, _, value = arg.partition("=")
        if name in {"--secure-port", "--listen-client-urls", "--listen-peer-urls"} and value:
            ports.append(int(value.rsplit(":", 1)[-1]))
    return ports


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a listener
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigterm_stops_every_process_and_releases_the_ports(tmp_path):
    state_dir = tmp_path / "state"
    env = {**os.environ, "KONTAINERS_BIN_DIR": str(build.ensure_built())}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "kontainers.cli", "cluster", "--state-dir", str(state_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        wait_until(lambda: (state_dir / "kubeconfig").exists() or launcher.poll() is not None, 120,
                   "kontainers cluster wrote no kubeconfig")
        assert launcher.poll() is None, launcher.stdout.read()
        server = yaml.safe_load((state_dir / "kubeconfig").read_text())["clusters"][0]["cluster"]["server"]
        pids = json.loads((state_dir / "pids.json").read_text())
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
        ports = sorted({port for pid in pids.values() for port in _listening_ports(pid)})
        assert int(server.rsplit(":", 1)[1]) in ports
        assert not any(_port_is_free(port) for port in ports), "components listen while running"

        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
    finally:
        if launcher.poll() is None:  # a failed assertion above: still stop the components
            launcher.terminate()
            try:
                launcher.wait(timeout=60)
            except subprocess.TimeoutExpired:
                launcher.kill()
                launcher.wait()
    output = launcher.stdout.read()
    assert "stopping the control plane" in output
    assert not (state_dir / "kubeconfig").exists(), "a stopped control plane withdraws its kubeconfig"

    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) still runs"
    assert _processes_mentioning(str(state_dir)) == []
    assert [port for port in ports if not _port_is_free(port)] == []
