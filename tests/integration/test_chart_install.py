"""`helm install` into the real control plane, then the operator, the gateway and the egress proxy
run here WITH THE CREDENTIALS OF THE CHART'S ServiceAccounts (TokenRequest tokens) and the chart's
own configuration: a Container is reconciled and served through the API (the RBAC is sufficient),
and requests outside their rights are forbidden (the RBAC is narrow).

The release serves one tenant namespace (`watchNamespaces`), the least-privilege mode: Roles
there, only kopf's cluster-scoped reads in a ClusterRole. The session's own operator is stopped
for this module, so what reconciles here is the operator under test and nothing else.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from fixtures.chart import Release, free_port, http_get, install, run_component, wait_until

pytestmark = pytest.mark.cluster

FORBIDDEN = re.compile(r"[Ff]orbidden")  # the API server's reason, in kubectl's and the clients' errors


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chart-install")


@pytest.fixture(scope="module")
def namespaces(cluster):
    suffix = uuid.uuid4().hex[:6]
    names = {"release": f"kt-{suffix}", "tenant": f"kt-{suffix}-tenant", "other": f"kt-{suffix}-other"}
    for name in names.values():
        cluster.kubectl("create", "namespace", name)
        cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield names
    for name in names.values():
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def release(cluster, container_crd, namespaces, workdir) -> Release:
    installed = install(cluster, namespaces["release"], namespaces["release"], workdir,
                        f"watchNamespaces={{{namespaces['tenant']}}}")
    yield installed
    installed.uninstall()


@pytest.fixture(scope="module")
def stack(release, namespaces, node_agent, no_session_operator, workdir):
    """Operator, gateway and egress proxy, each as the chart configures it, each with its SA token."""
    logs = workdir / "logs"
    ports = {"operator": free_port(), "gateway": free_port(), "gateway-metrics": free_port(), "egress": free_port(),
             "egress-ops": free_port()}
    operator = run_component(release, "operator", logs, env={
        "KONTAINERS_OPERATOR_OPS_HOST": "127.0.0.1", "KONTAINERS_OPERATOR_OPS_PORT": str(ports["operator"])})
    gateway = run_component(release, "gateway", logs, env={
        "KONTAINERS_GATEWAY_HOST": "127.0.0.1", "KONTAINERS_GATEWAY_PORT": str(ports["gateway"]),
        "KONTAINERS_GATEWAY_METRICS_PORT": str(ports["gateway-metrics"]),
        "KONTAINERS_FILES_ROOT": str(workdir / "files")})
    egress = run_component(release, "egress", logs, env={
        "KONTAINERS_EGRESS_HOST": "127.0.0.1", "KONTAINERS_EGRESS_PORT": str(ports["egress"]),
        "KONTAINERS_EGRESS_OPS_PORT": str(ports["egress-ops"]),
        "KONTAINERS_EGRESS_CONFDIR": str(workdir / "egress-confdir")})
    processes = {"operator": operator, "gateway": gateway, "egress": egress}

    def tails() -> str:
        return "\n".join(f"--- {name} log tail\n{p.tail(30)}" for name, p in processes.items())

    try:
        for name, port in (("operator", ports["operator"]), ("gateway", ports["gateway"]),
                           ("egress", ports["egress-ops"])):
            wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200 or not processes[name].running(),
                       90, f"{name} to be ready", tails)
            assert processes[name].running(), f"{name} exited\n{tails()}"
        yield {"processes": processes, "ports": ports, "tails": tails,
               "base_url": f"http://127.0.0.1:{ports['gateway']}/v1"}
    finally:
        for process in processes.values():
            process.stop()


def kubectl_as(cluster, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cluster.tool("kubectl"), "--kubeconfig", str(kubeconfig), *args],
                          capture_output=True, text=True, timeout=60)


# --- what helm install made -----------------------------------------------------------------


def test_helm_install_creates_the_release(cluster, release, namespaces):
    status = json.loads(cluster.helm("status", release.name, "-n", release.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    ns, tenant = namespaces["release"], namespaces["tenant"]
    names = {c: release.object_name(c) for c in ("operator", "gateway", "egress")}
    deployments = cluster.kubectl("-n", ns, "get", "deployments", "-o", "name").stdout.split()
    assert sorted(deployments) == sorted(f"deployment.apps/{n}" for n in names.values())
    for name in names.values():
        cluster.kubectl("-n", ns, "get", "serviceaccount", name)
        cluster.kubectl("-n", tenant, "get", "role", name)
        cluster.kubectl("-n", tenant, "get", "rolebinding", name)
    cluster.kubectl("-n", ns, "get", "secret", "kontainers-api-keys")
    cluster.kubectl("-n", ns, "get", "service", names["gateway"], names["egress"])
    for crd in ("containers.kontainers.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
    # NOTES.txt: how to reach this gateway, mint a key into this Secret, create a first container.
    notes = cluster.helm("get", "notes", release.name, "-n", ns).stdout
    assert f"port-forward service/{names['gateway']} 8080:80" in notes, notes
    assert f"kontainers apikey create --namespace team-a --secret-namespace {ns}" in notes, notes
    assert "containers.create(" in notes and "kind: Container" in notes, notes
    assert f"serves Containers in: {tenant}" in notes, notes
    # Namespaced mode: the gateway and egress proxy get no ClusterRole at all.
    cluster_roles = cluster.kubectl("get", "clusterroles", "-o", "name").stdout.split()
    assert f"clusterrole.rbac.authorization.k8s.io/{names['operator']}" in cluster_roles
    assert f"clusterrole.rbac.authorization.k8s.io/{names['gateway']}" not in cluster_roles
    assert f"clusterrole.rbac.authorization.k8s.io/{names['egress']}" not in cluster_roles


def test_the_plain_manifests_are_accepted_by_the_api_server(cluster, container_crd):
    # Server-side dry run of every object of manifests/ (schemas, RBAC, admission incl. Pod
    # Security of the namespace's `restricted` label). Namespaced objects need their namespace to
    # exist for real; it is made for the check when the cluster has none.
    manifests = Path(__file__).resolve().parents[2] / "manifests"
    created = cluster.kubectl("create", "namespace", "kontainers", check=False).returncode == 0
    try:
        applied = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                                  "-f", str(manifests))
        lines = applied.stdout.splitlines()
        assert any("deployment.apps/kontainers-operator serverside-applied" in line for line in lines), applied.stdout
        assert any("customresourcedefinition.apiextensions.k8s.io/containers.kontainers.dev" in line
                   for line in lines), applied.stdout
    finally:
        if created:
            cluster.kubectl("delete", "namespace", "kontainers", "--wait=false", check=False)


# --- the RBAC is sufficient -----------------------------------------------------------------


def test_the_chart_service_accounts_are_enough_to_serve_containers(cluster, release, namespaces, stack):
    import openai

    ns, tenant = namespaces["release"], namespaces["tenant"]
    # An installation's admin mints a key into the Secret the chart created.
    api_key = subprocess.run(
        [*_kontainers(), "apikey", "create", "--namespace", tenant, "--secret-namespace", ns,
         "--kubeconfig", cluster.kubeconfig],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    client = openai.OpenAI(base_url=stack["base_url"], api_key=api_key, max_retries=8, timeout=120)
    wait_until(lambda: _accepts(stack["base_url"], api_key), 30, "the gateway to see the new key", stack["tails"])

    # Through the API: create (the operator reconciles it), upload, read back, list, delete.
    container = client.containers.create(name="chart-rbac")
    wait_until(lambda: client.containers.retrieve(container.id).status == "running", 60,
               "the container to run", stack["tails"])
    payload = b"written with the chart's ServiceAccounts\n" * 100
    uploaded = client.containers.files.create(container.id, file=("proof.txt", payload))
    assert client.containers.files.content.retrieve(uploaded.id, container_id=container.id).read() == payload
    assert [f.path for f in client.containers.files.list(container.id)] == ["/mnt/data/proof.txt"]

    # An allowlist container with a domain secret: the gateway writes the secret's Secret, the
    # operator copies the egress proxy's published CA next to the pod, the proxy watches it.
    allowlisted = client.containers.create(name="chart-allowlist", network_policy={
        "type": "allowlist", "allowed_domains": ["pypi.org"],
        "domain_secrets": [{"domain": "pypi.org", "name": "PYPI_TOKEN", "value": "not-a-real-token"}]})
    wait_until(lambda: client.containers.retrieve(allowlisted.id).status == "running", 60,
               "the allowlist container to run", stack["tails"])
    configmaps = cluster.kubectl("-n", tenant, "get", "configmaps", "-o", "name").stdout
    assert "egress-ca" in configmaps, configmaps

    # GitOps: a Container written with kubectl is reconciled and served too.
    cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "kontainers.dev/v1alpha1", "kind": "Container",
        "metadata": {"name": "gitops", "namespace": tenant},
        "spec": {"name": "gitops", "memoryLimit": "4g"}}))
    wait_until(lambda: _status(cluster, tenant, "gitops") == "running", 60, "the kubectl-made Container to run",
               stack["tails"])
    ids = {c.id: c for c in client.containers.list()}
    gitops_id = cluster.kubectl("-n", tenant, "get", "container", "gitops", "-o", "jsonpath={.status.id}").stdout
    assert gitops_id in ids and ids[gitops_id].memory_limit == "4g"
    pods = cluster.kubectl("-n", tenant, "get", "pods", "-l", "app.kubernetes.io/managed-by=kontainers,!kontainers.dev/pool",
                           "-o", "name").stdout.split()
    assert len(pods) == 3  # one per Container; the chart's default warm pool (1g: 2) keeps two more
    wait_until(lambda: len(cluster.kubectl("-n", tenant, "get", "pods", "-l", "kontainers.dev/pool=1g",
                                           "-o", "name").stdout.split()) == 2, 60, "the warm pool", stack["tails"])

    client.containers.delete(container.id)
    wait_until(lambda: container.id not in {c.id for c in client.containers.list()}, 30, "the delete", stack["tails"])

    # The egress proxy made its CA and published it, with its own rights only.
    cluster.kubectl("-n", ns, "get", "secret", "kontainers-egress-ca")
    published = json.loads(cluster.kubectl("-n", ns, "get", "configmap", "kontainers-egress-ca", "-o", "json").stdout)
    assert "BEGIN CERTIFICATE" in published["data"]["ca.crt"]
    assert published["data"]["proxy-url"] == f"http://{release.object_name('egress')}.{ns}.svc:3128"

    # Nobody was refused anything along the way.
    for name, process in stack["processes"].items():
        log = Path(process.log).read_text(errors="replace")
        refused = [line for line in log.splitlines() if FORBIDDEN.search(line)]
        assert not refused, f"{name} was refused:\n" + "\n".join(refused[:5])


def test_the_operator_keeps_its_peering_alive_with_the_chart_rights(cluster, stack, release, namespaces):
    # Namespaced mode: the operator made the KopfPeering in its watched namespace, and its
    # keep-alive (identity = POD_ID from the chart's fieldRef) is in the status.
    peering = release.env("operator")["KONTAINERS_OPERATOR_PEERING_NAME"]
    identity = release.env("operator")["POD_ID"]

    def alive() -> bool:
        found = cluster.kubectl("-n", namespaces["tenant"], "get", "kopfpeering", peering, "-o", "json", check=False)
        return found.returncode == 0 and identity in (json.loads(found.stdout).get("status") or {})

    wait_until(alive, 30, "the operator's keep-alive in its KopfPeering", stack["tails"])
    status, text = http_get(f"http://127.0.0.1:{stack['ports']['operator']}/metrics")
    assert status == 200 and "kontainers_reconcile_duration_seconds_count" in text


# --- the RBAC is narrow ---------------------------------------------------------------------


@pytest.mark.parametrize("component", ["operator", "gateway", "egress"])
def test_requests_outside_the_granted_rights_are_forbidden(cluster, release, namespaces, component):
    kubeconfig = release.token_kubeconfig(component)
    outside = [
        ("get", "secrets", "-n", namespaces["tenant"]),          # listing Secrets, even where it works
        ("get", "secrets", "-n", namespaces["other"]),           # … or in another namespace
        ("get", "secrets", "-n", "kube-system"),
        ("get", "pods", "-n", namespaces["other"]),              # nothing outside watchNamespaces
        ("get", "containers.kontainers.dev", "-n", namespaces["other"]),
        ("delete", "node", "kwok-node-0", "--wait=false"),       # nodes: never
        ("get", "nodes"),
        ("create", "clusterrolebinding", "escalate", "--clusterrole=cluster-admin",
         f"--serviceaccount={release.namespace}:{release.service_account(component)}"),
        ("auth", "can-i", "get", "secrets", "--as=system:admin"),  # impersonation: never
    ]
    for args in outside:
        answer = kubectl_as(cluster, kubeconfig, *args)
        assert answer.returncode != 0 and FORBIDDEN.search(answer.stderr), (
            f"{component} may {' '.join(args)}:\n{answer.stdout}{answer.stderr}")


def test_the_granted_rights_are_exactly_the_documented_ones(release, namespaces):
    tenant, ns = namespaces["tenant"], namespaces["release"]
    allowed = {
        "operator": [("create", "pods", tenant), ("delete", "pods", tenant), ("watch", "pods", tenant),
                     ("create", "secrets", tenant), ("create", "networkpolicies.networking.k8s.io", tenant),
                     ("patch", "containers.kontainers.dev", tenant),
                     ("patch", "containers.kontainers.dev:status", tenant),
                     ("create", "configmaps", tenant), ("create", "events", tenant),
                     ("create", "kopfpeerings.kopf.dev", tenant)],
        "gateway": [("create", "containers.kontainers.dev", tenant), ("watch", "containers.kontainers.dev", tenant),
                    ("get", "secrets", tenant), ("create", "secrets", tenant),
                    ("create", "pods:exec", tenant), ("get", "pods:exec", tenant)],
        "egress": [("watch", "containers.kontainers.dev", tenant), ("get", "secrets", tenant),
                   ("create", "secrets", ns)],
    }
    denied = {
        "operator": [("list", "secrets", tenant), ("create", "pods", ns), ("update", "containers.kontainers.dev", tenant),
                     ("create", "clusterkopfpeerings.kopf.dev", None), ("get", "configmaps", ns)],
        "gateway": [("list", "secrets", tenant), ("get", "pods", tenant), ("get", "secrets", ns),
                    ("create", "pods", tenant), ("patch", "containers.kontainers.dev:status", tenant),
                    ("create", "pods:exec", ns), ("create", "pods:attach", tenant),
                    ("create", "pods:portforward", tenant)],
        "egress": [("list", "secrets", tenant), ("create", "containers.kontainers.dev", tenant),
                   ("get", "secrets", ns), ("delete", "secrets", ns)],
    }
    for component, checks in allowed.items():
        for verb, resource, namespace in checks:
            assert release.can_i(component, verb, resource, namespace), f"{component} cannot {verb} {resource} in {namespace}"
    for component, checks in denied.items():
        for verb, resource, namespace in checks:
            assert not release.can_i(component, verb, resource, namespace), f"{component} may {verb} {resource} in {namespace}"
    # Named exceptions: the one Secret and the one ConfigMap of the release namespace.
    assert release.can_i("gateway", "watch", "secrets", ns, name="kontainers-api-keys")
    assert release.can_i("egress", "get", "secrets", ns, name="kontainers-egress-ca")
    assert release.can_i("operator", "get", "configmaps", ns, name="kontainers-egress-ca")


def test_cluster_wide_mode_grants_the_same_rules_cluster_wide_and_no_more(cluster, container_crd, workdir):
    name = f"kw-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    installed = install(cluster, name, name, workdir)
    try:
        for ns in ("default", "kube-system", name):
            assert installed.can_i("operator", "create", "pods", ns)
            assert not installed.can_i("operator", "list", "secrets", ns)
            assert not installed.can_i("gateway", "list", "secrets", ns)
            assert not installed.can_i("gateway", "get", "pods", ns)
        peering = installed.env("operator")["KONTAINERS_OPERATOR_PEERING_NAME"]
        assert installed.can_i("operator", "patch", "clusterkopfpeerings.kopf.dev", None, name=peering)
        assert not installed.can_i("operator", "patch", "clusterkopfpeerings.kopf.dev", None, name="someone-else")
        assert not installed.can_i("operator", "delete", "nodes", None)
        assert not installed.can_i("operator", "list", "namespaces", None), "cluster-wide kopf lists no namespaces"
    finally:
        installed.uninstall()
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --- helpers --------------------------------------------------------------------------------


def _kontainers() -> list[str]:
    import sys

    return [sys.executable, "-m", "kontainers.cli"]


def _accepts(base_url: str, api_key: str) -> bool:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{base_url}/containers?limit=1", headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _status(cluster, namespace: str, name: str) -> str:
    return cluster.kubectl("-n", namespace, "get", "container", name, "-o", "jsonpath={.status.status}",
                           check=False).stdout.strip()
