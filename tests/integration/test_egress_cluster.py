"""The egress proxy against the real control plane: the per-install CA Secret, the watch of
Container resources (pod IP → allowlist) and domain-secret values read from their Secret.

No operator runs here: the test writes the Container's status.podIP itself (as the operator
would) and connects from that address — any 127.x address is bindable on Linux loopback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from kontainers.egress import placeholders
from kontainers.egress.operator_hook import ca_configmap_name, egress_sandbox_hook
from kontainers.egress.sandbox import CA_FILE, proxy_env
from fixtures.egress import ClusterEgressProcess, ServerThread, TlsMaterial
from kontainers.resources import names

pytestmark = pytest.mark.cluster

CRD = Path(__file__).resolve().parents[2] / "crds" / "containers.kontainers.dev.yaml"
POD_IP = "127.69.0.7"  # outside every pod CIDR the fixtures hand out, bindable on loopback


def install_crd(cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{names.CRD_NAME}", "--timeout=60s")


def curl_from(address: str, proxy: ClusterEgressProcess, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {e["name"]: e["value"] for e in proxy_env(f"http://127.0.0.1:{proxy.port}", str(proxy.ca_file))}
    return subprocess.run(["curl", "-sS", "--max-time", "15", "--interface", address, *args, url],
                          env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)


async def operator_wiring(kubeconfig: str, body: dict, egress_namespace: str) -> dict[str, str]:
    from kubernetes_asyncio import client

    from kontainers.kube import api_client
    from kontainers.resources.owner import ContainerRef
    from kontainers.settings import OperatorSettings

    api = await api_client(kubeconfig)
    try:
        kube = SimpleNamespace(core=client.CoreV1Api(api))
        extras = await egress_sandbox_hook(kube, ContainerRef.from_body(body),
                                           OperatorSettings(egress_namespace=egress_namespace))
    finally:
        await api.close()
    return {e["name"]: e["value"] for e in extras.env}


def test_proxy_follows_containers_and_reads_domain_secrets(cluster, make_namespace, tmp_path: Path) -> None:
    install_crd(cluster)
    egress_ns, tenant = make_namespace(restricted=False, prefix="egress"), make_namespace(prefix="tenant")
    secret_value = "sk-cluster-" + secrets.token_hex(12)
    tls = TlsMaterial.create(tmp_path / "tls", ["api.allowed.test", "denied.test"])
    servers = ServerThread()
    server = servers.start(tls)
    proxy = ClusterEgressProcess(
        cluster.kubeconfig, egress_ns, tmp_path / "proxy",
        extra_env={"KONTAINERS_EGRESS_HOST_MAP": json.dumps({"api.allowed.test": "127.0.0.1", "denied.test": "127.0.0.1"}),
                   "KONTAINERS_EGRESS_ALLOWED_PORTS": json.dumps([443, server.port])},
        extra_args=("--upstream-ca-file", str(tls.ca_file), "--allow-loopback-upstream"),
    )
    try:
        proxy.start()

        # The per-install CA: created once in the proxy's namespace, public part published.
        ca_secret = json.loads(cluster.kubectl("-n", egress_ns, "get", "secret", "kontainers-egress-ca", "-o", "json").stdout)
        assert ca_secret["type"] == "kubernetes.io/tls"
        ca_pem = base64.b64decode(ca_secret["data"]["tls.crt"]).decode()
        configmap = json.loads(cluster.kubectl("-n", egress_ns, "get", "configmap", "kontainers-egress-ca", "-o", "json").stdout)
        assert configmap["data"]["ca.crt"] == ca_pem == proxy.ca_file.read_text()
        assert "PRIVATE KEY" not in json.dumps(configmap)
        assert configmap["data"]["proxy-url"] == f"http://127.0.0.1:{proxy.port}"

        # A Container as the gateway writes it: the value only in its Secret, a reference in the spec.
        secret_name = names.domain_secrets_name("egress-c1")
        cluster.kubectl("-n", tenant, "create", "secret", "generic", secret_name, f"--from-literal=API_KEY={secret_value}")
        container = {
            "apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": "egress-c1", "namespace": tenant},
            "spec": {"name": "egress-c1", "networkPolicy": {
                "type": "allowlist", "allowedDomains": ["api.allowed.test"],
                "domainSecrets": [{"domain": "api.allowed.test", "name": "API_KEY",
                                   "secretKeyRef": {"name": secret_name, "key": "API_KEY"}}]}},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(container))
        uid = cluster.kubectl("-n", tenant, "get", "container", "egress-c1", "-o", "jsonpath={.metadata.uid}").stdout
        url = f"https://api.allowed.test:{server.port}/from-pod"

        # No pod IP yet: the address is nobody's.
        refused = curl_from(POD_IP, proxy, url)
        assert refused.returncode != 0 and "403" in refused.stderr

        cluster.kubectl("-n", tenant, "patch", "container", "egress-c1", "--subresource=status", "--type=merge",
                        "-p", json.dumps({"status": {"status": "running", "podIP": POD_IP}}))

        # The operator's hook: the sandbox's environment and its copy of the CA, as the pod gets them.
        body = json.loads(cluster.kubectl("-n", tenant, "get", "container", "egress-c1", "-o", "json").stdout)
        sandbox_env = asyncio.run(operator_wiring(cluster.kubeconfig, body, egress_ns))
        assert sandbox_env["HTTPS_PROXY"] == f"http://127.0.0.1:{proxy.port}"  # published by the proxy
        copy = json.loads(cluster.kubectl("-n", tenant, "get", "configmap",
                                          ca_configmap_name("egress-c1", uid), "-o", "json").stdout)
        assert copy["data"]["ca.crt"] == ca_pem
        assert copy["metadata"]["ownerReferences"][0]["uid"] == uid
        ca_copy = tmp_path / "sandbox-ca.crt"
        ca_copy.write_text(copy["data"]["ca.crt"])
        sandbox_env = {k: (str(ca_copy) if v == CA_FILE else v) for k, v in sandbox_env.items()}
        placeholder = sandbox_env["API_KEY"]
        assert placeholder == placeholders.placeholder(uid, "API_KEY")

        deadline, done = time.monotonic() + 20, None
        while time.monotonic() < deadline:
            # Configured by the sandbox environment alone (no --proxy, no --cacert).
            done = subprocess.run(
                ["curl", "-sS", "--max-time", "15", "--interface", POD_IP, "-H",
                 "Authorization: Bearer $API_KEY".replace("$API_KEY", placeholder), url],
                env={"PATH": os.environ["PATH"], **sandbox_env}, capture_output=True, text=True)
            if done.returncode == 0:
                break
            time.sleep(0.3)
        assert done is not None and done.returncode == 0, f"{done.stderr}\n{proxy.log_tail()}"
        (arrived,) = [r for r in server.received if r.path == "/from-pod"]
        assert arrived.headers["Authorization"] == f"Bearer {secret_value}"
        assert secret_value not in done.stdout  # the echo came back scrubbed

        denied = curl_from(POD_IP, proxy, f"https://denied.test:{server.port}/x")
        assert denied.returncode != 0 and "403" in denied.stderr

        # A restarted proxy keeps the same CA (read back from the Secret).
        proxy.stop()
        proxy.start()
        assert proxy.ca_file.read_text() == ca_pem

        stored = cluster.kubectl("-n", tenant, "get", "container", "egress-c1", "-o", "json").stdout
        assert secret_value not in stored and secret_name in stored

        # The Container goes away: its address is refused again.
        cluster.kubectl("-n", tenant, "delete", "container", "egress-c1", "--wait=true")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            gone = curl_from(POD_IP, proxy, url)
            if gone.returncode != 0:
                break
            time.sleep(0.3)
        assert gone.returncode != 0 and "403" in gone.stderr

        # The value never reached the Container, events or the proxy's logs.
        events = cluster.kubectl("-n", tenant, "get", "events", "-o", "json").stdout
        assert secret_value not in events
        assert secret_value not in proxy.log_file.read_text()
    finally:
        proxy.stop()
        servers.stop()
