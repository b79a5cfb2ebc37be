"""The Helm chart without a cluster: lint, render with default and non-default values, the values
schema, the RBAC shape, and the copies that must not drift (CRDs, plain manifests)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kontainers"


def _load_render_module():
    spec = importlib.util.spec_from_file_location("render_manifests", REPO / "manifests" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_manifests = _load_render_module()
HELM = render_manifests.helm_binary()
KUBE_VERSION = render_manifests.kube_version()


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def template(*sets: str, release: str = "kontainers", namespace: str = "kontainers", values: dict | None = None,
             tmp_path: Path | None = None) -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
    for item in sets:
        args += ["--set", item]
    if values is not None:
        assert tmp_path is not None
        path = tmp_path / "values.yaml"
        path.write_text(yaml.safe_dump(values))
        args += ["-f", str(path)]
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [doc for doc in by_kind(docs, kind) if doc["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def env_of(deployment: dict) -> dict[str, object]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container["env"]}


NON_DEFAULT = {
    "fullnameOverride": "sandboxes",
    "image": {"repository": "registry.example.com/kontainers", "tag": "1.2.3",
              "digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "crds": {"enabled": False, "keep": False},
    "watchNamespaces": ["team-a", "team-b"],
    "logLevel": "DEBUG",
    "sandbox": {"image": "python:3.13-slim", "runtimeClassName": "gvisor", "sidecarPort": 9081,
                "dataSizeLimit": "20Gi",
                "sizes": {"4g": {"memoryRequest": "4Gi", "cpuRequest": "1", "cpuLimit": 4}}},
    "expiry": {"checkIntervalSeconds": 60, "retentionSeconds": 86400},
    "operator": {"replicas": 2, "nodeSelector": {"kubernetes.io/os": "linux"},
                 "tolerations": [{"key": "dedicated", "value": "platform", "effect": "NoSchedule"}],
                 "podAnnotations": {"prometheus.io/scrape": "true"}},
    "gateway": {"replicas": 3, "minAvailable": 1,
                "metricsPort": 9100,
                "apiKeys": {"existingSecret": "my-api-keys"},
                "service": {"type": "LoadBalancer", "port": 443},
                "ingress": {"enabled": True, "className": "nginx",
                            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "0"},
                            "hosts": [{"host": "kontainers.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
                            "tls": [{"secretName": "kontainers-tls", "hosts": ["kontainers.example.com"]}]},
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                        "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}}}}]}}},
    "files": {"backend": "s3", "maxUploadBytes": 104857600,
              "s3": {"endpointUrl": "http://minio.storage.svc:9000", "bucket": "acme-kontainers-files",
                     "prefix": "prod/", "region": "eu-west-1", "existingSecret": "kontainers-s3"}},
    "egress": {"enabled": False},
    "metrics": {"serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "10s",
                                   "labels": {"release": "prometheus"}}},
}


# --- lint ----------------------------------------------------------------------------------


def test_helm_lint_is_clean_with_default_values():
    proc = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION)
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


def test_helm_lint_is_clean_with_non_default_values(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(NON_DEFAULT))
    proc = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, "-f", str(values))
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


# --- render: defaults ----------------------------------------------------------------------


def test_default_render_creates_every_component():
    docs = template()
    kinds = sorted({doc["kind"] for doc in docs})
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment",
                     "PersistentVolumeClaim", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount"]
    assert {d["metadata"]["name"] for d in by_kind(docs, "Deployment")} == {
        "kontainers-operator", "kontainers-gateway", "kontainers-egress"}
    assert {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")} == {
        "containers.kontainers.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert one(docs, "Secret")["metadata"]["name"] == "kontainers-api-keys"
    assert one(docs, "Deployment", "-gateway")["spec"]["replicas"] == 1
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "kontainers-files"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    gateway = one(docs, "Deployment", "-gateway")
    mounts = gateway["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "files", "mountPath": env_of(gateway)["KONTAINERS_FILES_ROOT"]} in mounts


def test_every_deployment_is_hardened_and_probed():
    for deployment in by_kind(template(), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert "http" in {port["name"] for port in container["ports"]}
        assert container["image"] == "ghcr.io/kontainers/kontainers:0.1.0"
        assert container["args"][0] in {"operator", "gateway", "egress"}
        assert pod["serviceAccountName"] == deployment["metadata"]["name"]
        assert "app.kubernetes.io/managed-by" not in deployment["spec"]["template"]["metadata"]["labels"]


def test_crds_are_kept_on_uninstall_by_default_and_match_their_single_source():
    docs = template()
    for crd in by_kind(docs, "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"] == "Delete=false"
    source = yaml.safe_load((REPO / "crds" / "containers.kontainers.dev.yaml").read_text())
    rendered = next(c for c in by_kind(docs, "CustomResourceDefinition") if c["metadata"]["name"] == source["metadata"]["name"])
    assert rendered["spec"] == source["spec"]
    for key, value in source["metadata"].get("labels", {}).items():
        assert rendered["metadata"]["labels"][key] == value


def test_the_chart_copy_of_the_crd_is_identical_to_crds_dir():
    source = REPO / "crds" / "containers.kontainers.dev.yaml"
    copy = CHART / "files" / "crds" / source.name
    assert copy.read_bytes() == source.read_bytes(), "the chart's CRD copy is stale: run `python manifests/render.py`"


def test_operator_env_carries_the_sandbox_configuration():
    env = env_of(one(template(), "Deployment", "-operator"))
    assert json.loads(env["KONTAINERS_OPERATOR_NAMESPACES"]) == []
    assert env["KONTAINERS_OPERATOR_SANDBOX_IMAGE"] == "python:3.12-slim"
    assert env["KONTAINERS_OPERATOR_SIDECAR_IMAGE"] == "ghcr.io/kontainers/kontainers:0.1.0"
    assert "KONTAINERS_OPERATOR_RUNTIME_CLASS_NAME" not in env, "empty: the cluster default, not an empty name"
    for name in ("MEMORY_REQUESTS", "CPU_REQUESTS", "CPU_LIMITS"):
        assert set(json.loads(env[f"KONTAINERS_OPERATOR_{name}"])) == {"1g", "4g", "16g", "64g"}
    docs = template()
    gateway_pod_labels = one(docs, "Deployment", "-gateway")["spec"]["template"]["metadata"]["labels"]
    egress_pod_labels = one(docs, "Deployment", "-egress")["spec"]["template"]["metadata"]["labels"]
    assert json.loads(env["KONTAINERS_OPERATOR_GATEWAY_POD_LABELS"]).items() <= gateway_pod_labels.items()
    assert json.loads(env["KONTAINERS_OPERATOR_EGRESS_POD_LABELS"]).items() <= egress_pod_labels.items()
    assert env["KONTAINERS_OPERATOR_EGRESS_PORT"] == "3128"
    assert "KONTAINERS_OPERATOR_PEERING_MANDATORY" not in env, "one replica may run without peering"
    assert env["KONTAINERS_OPERATOR_OPS_HOST"] == "0.0.0.0"


def _settings_classes():
    from kontainers import settings

    return {"KONTAINERS_OPERATOR_": settings.OperatorSettings, "KONTAINERS_GATEWAY_": settings.GatewaySettings,
            "KONTAINERS_FILES_": settings.FilesSettings, "KONTAINERS_EGRESS_": settings.EgressSettings}


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={team-a}", "sandbox.runtimeClassName=gvisor",
                                       "files.backend=s3", "files.s3.existingSecret=s3-keys", "egress.mode=cilium")])
def test_every_variable_the_chart_sets_is_a_setting_and_parses(sets, monkeypatch):
    """The chart's env names the real settings fields (a rename fails here, not in a cluster) and
    every value parses into its field's type."""
    classes = _settings_classes()
    for deployment in by_kind(template(*sets), "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        used = set()
        for item in container["env"]:
            name = item["name"]
            prefix = next((p for p in classes if name.startswith(p)), None)
            if prefix is None:
                assert name == "POD_ID", f"{deployment['metadata']['name']}: unexpected variable {name}"
                continue
            field = name[len(prefix):].lower()
            assert field in classes[prefix].model_fields, f"{name} is not a field of {classes[prefix].__name__}"
            used.add(prefix)
            monkeypatch.setenv(name, item.get("value", "from-the-cluster"))
        for prefix in used:
            classes[prefix]()  # parses, or raises naming the bad variable
        for name in [n for n in os.environ if n.startswith("KONTAINERS_")]:
            monkeypatch.delenv(name)


# --- render: non-default values ------------------------------------------------------------


def test_non_default_values_reach_the_objects(tmp_path):
    docs = template(values=NON_DEFAULT, tmp_path=tmp_path)
    assert not by_kind(docs, "CustomResourceDefinition")
    assert not by_kind(docs, "Secret"), "existingSecret: the chart must not create the keys Secret"
    assert {d["metadata"]["name"] for d in by_kind(docs, "Deployment")} == {"sandboxes-operator", "sandboxes-gateway"}

    gateway = one(docs, "Deployment", "-gateway")
    pod = gateway["spec"]["template"]["spec"]
    assert gateway["spec"]["replicas"] == 3
    assert pod["containers"][0]["image"] == "registry.example.com/kontainers:1.2.3@sha256:" + "a" * 64
    assert pod["containers"][0]["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert "podAntiAffinity" in pod["affinity"]
    gateway_env = env_of(gateway)
    assert gateway_env["KONTAINERS_GATEWAY_KEYS_SECRET"] == "my-api-keys"
    assert json.loads(gateway_env["KONTAINERS_GATEWAY_WATCH_NAMESPACES"]) == ["team-a", "team-b"]
    assert gateway_env["KONTAINERS_GATEWAY_SIDECAR_PORT"] == "9081"

    operator = one(docs, "Deployment", "-operator")
    operator_pod = operator["spec"]["template"]["spec"]
    assert operator["spec"]["replicas"] == 2
    assert operator_pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert operator_pod["tolerations"][0]["key"] == "dedicated"
    assert operator["spec"]["template"]["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    env = env_of(operator)
    assert env["KONTAINERS_OPERATOR_RUNTIME_CLASS_NAME"] == "gvisor"
    assert env["KONTAINERS_OPERATOR_PEERING_MANDATORY"] == "true", "two replicas must never run unpeered"
    assert env["KONTAINERS_OPERATOR_SANDBOX_IMAGE"] == "python:3.13-slim"
    assert env["KONTAINERS_OPERATOR_SIDECAR_IMAGE"] == gateway["spec"]["template"]["spec"]["containers"][0]["image"]
    assert env["KONTAINERS_OPERATOR_EXPIRY_CHECK_INTERVAL"] == "60"
    assert env["KONTAINERS_OPERATOR_EXPIRED_RETENTION"] == "86400"
    assert json.loads(env["KONTAINERS_OPERATOR_NAMESPACES"]) == ["team-a", "team-b"]
    assert json.loads(env["KONTAINERS_OPERATOR_MEMORY_REQUESTS"])["4g"] == "4Gi"
    assert json.loads(env["KONTAINERS_OPERATOR_CPU_LIMITS"])["4g"] == "4"
    assert json.loads(env["KONTAINERS_OPERATOR_MEMORY_REQUESTS"])["1g"] == "256Mi", "unset sizes keep their defaults"

    assert not by_kind(docs, "PersistentVolumeClaim"), "s3 backend: no files volume"
    assert gateway_env["KONTAINERS_FILES_BACKEND"] == "s3"
    assert gateway_env["KONTAINERS_FILES_S3_BUCKET"] == "acme-kontainers-files"
    assert gateway_env["KONTAINERS_FILES_S3_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
    assert gateway_env["KONTAINERS_FILES_S3_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "kontainers-s3", "key": "access-key-id"}}
    assert gateway_env["KONTAINERS_FILES_MAX_UPLOAD_BYTES"] == "104857600"

    ingress = one(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["rules"][0]["host"] == "kontainers.example.com"
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "sandboxes-gateway"
    assert one(docs, "Service", "-gateway")["spec"]["type"] == "LoadBalancer"
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def ports_of(deployment: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}


def test_metrics_have_their_own_port_and_services_apart_from_the_api():
    docs = template()
    gateway = one(docs, "Deployment", "-gateway")
    assert ports_of(gateway) == {"http": 8080, "metrics": 9090}
    assert env_of(gateway)["KONTAINERS_GATEWAY_PORT"] == "8080"
    assert env_of(gateway)["KONTAINERS_GATEWAY_METRICS_PORT"] == "9090"
    # The probes stay on the API port, where /healthz and /readyz are.
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The API's Service (LoadBalancer or Ingress backend) never carries the metrics port.
    assert [p["name"] for p in one(docs, "Service", "-gateway")["spec"]["ports"]] == ["http"]
    metrics = {d["metadata"]["name"]: d for d in by_kind(docs, "Service") if d["metadata"]["name"].endswith("-metrics")}
    assert set(metrics) == {"kontainers-operator-metrics", "kontainers-gateway-metrics", "kontainers-egress-metrics"}
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    for name, service in metrics.items():
        assert service["spec"]["type"] == "ClusterIP"
        assert service["metadata"]["labels"]["kontainers.dev/metrics"] == "true"
        (port,) = service["spec"]["ports"]
        deployment = deployments[name.removesuffix("-metrics")]
        assert port["name"] == "metrics"
        assert port["port"] == ports_of(deployment)[port["targetPort"]], name
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert not by_kind(docs, "ServiceMonitor"), "off by default: it needs the Prometheus Operator's CRDs"
    cilium = {d["metadata"]["name"] for d in by_kind(template("egress.mode=cilium"), "Service")}
    assert "kontainers-egress-metrics" not in cilium and "kontainers-gateway-metrics" in cilium


def test_the_service_monitor_scrapes_every_metrics_service(tmp_path):
    docs = template(values=NON_DEFAULT, tmp_path=tmp_path)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s",
                                             "scrapeTimeout": "10s"}]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["kontainers"]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [d for d in by_kind(docs, "Service") if selector.items() <= d["metadata"]["labels"].items()]
    assert sorted(d["metadata"]["name"] for d in selected) == ["sandboxes-gateway-metrics", "sandboxes-operator-metrics"]
    gateway = one(docs, "Service", "sandboxes-gateway-metrics")
    assert gateway["spec"]["ports"][0]["port"] == 9100
    plain = template("metrics.serviceMonitor.enabled=true")
    assert "interval" not in one(plain, "ServiceMonitor")["spec"]["endpoints"][0]


def test_hashed_api_keys_go_into_the_created_secret_and_plain_keys_are_refused():
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    secret = one(template(f"gateway.apiKeys.hashed.{digest}=team-a"), "Secret")
    assert secret["stringData"] == {digest: "team-a"}
    refused = helm("template", "k", str(CHART), "--kube-version", KUBE_VERSION,
                   "--set", "gateway.apiKeys.hashed.sk-live-123=team-a", check=False)
    assert refused.returncode != 0


def test_names_are_truncated_to_63_characters():
    release = "r" * 53
    for doc in template(release=release):
        name = doc["metadata"]["name"]
        assert len(name) <= 63, name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name
        for key, value in doc["metadata"].get("labels", {}).items():
            assert len(str(value)) <= 63, (key, value)
    names = [d["metadata"]["name"] for d in by_kind(template(release=release), "Deployment")]
    assert len(set(names)) == 3, "truncation must keep the component suffix"
    services = [d["metadata"]["name"] for d in by_kind(template(release=release), "Service")]
    assert len(set(services)) == len(services) == 5, services


def test_several_gateways_on_a_single_node_volume_fail_with_a_clear_message():
    proc = helm("template", "k", str(CHART), "--kube-version", KUBE_VERSION,
                "--set", "gateway.replicas=2", check=False)
    assert proc.returncode != 0 and "files.backend=s3" in proc.stderr
    shared = template("gateway.replicas=2", "files.persistence.accessModes={ReadWriteMany}")
    assert one(shared, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_ingress_without_hosts_fails_with_a_clear_message():
    proc = helm("template", "k", str(CHART), "--kube-version", KUBE_VERSION,
                "--set", "gateway.ingress.enabled=true", check=False)
    assert proc.returncode != 0 and "gateway.ingress.hosts" in proc.stderr


# --- RBAC ----------------------------------------------------------------------------------

FORBIDDEN_VERBS = {"*", "escalate", "bind", "impersonate"}


def all_rules(docs: list[dict]) -> list[tuple[dict, dict]]:
    return [(doc, rule) for doc in docs if doc["kind"] in {"Role", "ClusterRole"} for rule in doc.get("rules", [])]


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={team-a,team-b}",), ("egress.mode=cilium",)],
                         ids=["cluster-wide", "namespaced", "cilium"])
def test_rbac_has_no_wildcards_and_no_dangerous_grants(sets):
    docs = template(*sets)
    for doc, rule in all_rules(docs):
        where = f"{doc['kind']} {doc['metadata']['name']}: {rule}"
        assert "*" not in rule.get("apiGroups", []), where
        assert "*" not in rule["resources"], where
        assert not FORBIDDEN_VERBS & set(rule["verbs"]), where
        assert "nodes" not in rule["resources"], where
        assert not {"clusterroles", "clusterrolebindings", "roles", "rolebindings"} & set(rule["resources"]), where
        if "secrets" in rule["resources"] and not rule.get("resourceNames"):
            assert not {"list", "watch"} & set(rule["verbs"]), f"secrets must never be enumerable: {where}"
    for binding in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        assert binding["roleRef"]["name"] not in {"cluster-admin", "admin", "edit"}


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={team-a,team-b}",)], ids=["cluster-wide", "namespaced"])
def test_only_the_gateway_may_exec_and_only_exec(sets):
    """pods/exec (the exec API): the gateway's Role, get+create; no pods, attach or port-forward."""
    docs = template(*sets)
    pod_rules = [(doc["metadata"]["name"], rule) for doc, rule in all_rules(docs)
                 if {"pods/exec", "pods/attach", "pods/portforward"} & set(rule["resources"])]
    assert pod_rules and all(name == "kontainers-gateway" for name, _ in pod_rules), pod_rules
    for _, rule in pod_rules:
        assert rule["resources"] == ["pods/exec"] and sorted(rule["verbs"]) == ["create", "get"], rule
    gateway = [rule for doc, rule in all_rules(docs) if doc["metadata"]["name"] == "kontainers-gateway"]
    assert not any("pods" in rule["resources"] for rule in gateway)


def test_namespaced_mode_keeps_namespaced_rules_out_of_cluster_roles():
    docs = template("watchNamespaces={team-a,team-b}")
    namespaced_resources = {"containers", "containers/status", "pods", "secrets", "networkpolicies", "events",
                            "kopfpeerings", "configmaps"}
    for role in by_kind(docs, "ClusterRole"):
        for rule in role["rules"]:
            assert not namespaced_resources & set(rule["resources"]), (role["metadata"]["name"], rule)
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(docs, "Role")}
    for namespace in ("team-a", "team-b"):
        for component in ("operator", "gateway", "egress"):
            assert (namespace, f"kontainers-{component}") in roles
    bindings = by_kind(docs, "RoleBinding")
    for binding in bindings:
        subject = binding["subjects"][0]
        assert subject["kind"] == "ServiceAccount" and subject["namespace"] == "kontainers"
        assert binding["roleRef"]["name"] == binding["metadata"]["name"]


def test_the_api_keys_secret_is_the_only_secret_the_gateway_may_watch():
    docs = template()
    own = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "kontainers-gateway-self"]
    assert len(own) == 1 and own[0]["metadata"]["namespace"] == "kontainers"
    (rule,) = own[0]["rules"]
    assert rule["resources"] == ["secrets"] and rule["resourceNames"] == ["kontainers-api-keys"]


# --- egress modes ----------------------------------------------------------------------------

CILIUM_RULE = {"apiGroups": ["cilium.io"], "resources": ["ciliumnetworkpolicies"], "verbs": ["get", "create", "patch"]}


def rules_of(docs: list[dict], component: str) -> list[tuple[dict, dict]]:
    return [(doc, rule) for doc, rule in all_rules(docs)
            if doc["metadata"]["labels"]["app.kubernetes.io/component"] == component]


def test_proxy_mode_runs_the_proxy_and_grants_nothing_on_cilium_policies():
    docs = template()
    assert env_of(one(docs, "Deployment", "-operator"))["KONTAINERS_OPERATOR_EGRESS_MODE"] == "proxy"
    assert env_of(one(docs, "Deployment", "-gateway"))["KONTAINERS_GATEWAY_EGRESS_MODE"] == "proxy"
    assert one(docs, "Deployment", "-egress") and one(docs, "Service", "-egress")
    for doc, rule in all_rules(docs):
        assert "cilium.io" not in rule["apiGroups"] and "ciliumnetworkpolicies" not in rule["resources"], doc["metadata"]
    operator_resources = {r for _, rule in rules_of(docs, "operator") for r in rule["resources"]}
    assert "configmaps" in operator_resources, "the CA copies of proxy mode"


@pytest.mark.parametrize("sets", [(), ("watchNamespaces={team-a,team-b}",)], ids=["cluster-wide", "namespaced"])
def test_cilium_mode_grants_the_operator_cilium_policies_and_deploys_no_proxy(sets):
    docs = template("egress.mode=cilium", *sets)
    assert env_of(one(docs, "Deployment", "-operator"))["KONTAINERS_OPERATOR_EGRESS_MODE"] == "cilium"
    assert env_of(one(docs, "Deployment", "-gateway"))["KONTAINERS_GATEWAY_EGRESS_MODE"] == "cilium"
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") == "egress"], \
        "no proxy Deployment, Service, ServiceAccount or RBAC in cilium mode"

    operator = rules_of(docs, "operator")
    holders = [doc for doc, rule in operator if rule == CILIUM_RULE]
    if sets:  # namespaced: one Role per watched namespace, nothing cluster-wide
        assert sorted((d["kind"], d["metadata"]["namespace"]) for d in holders) == [("Role", "team-a"), ("Role", "team-b")]
    else:
        assert [d["kind"] for d in holders] == ["ClusterRole"]
    other = [rule for _, rule in all_rules(docs) if rule != CILIUM_RULE]
    assert not [r for r in other if "cilium.io" in r["apiGroups"] or "ciliumnetworkpolicies" in r["resources"]]
    assert not [r for _, r in operator if "configmaps" in r["resources"]], "no egress CA to copy or read"


# --- values and their schema ---------------------------------------------------------------


@pytest.mark.parametrize(
    "sets, message",
    [
        (["operator.replicas=two"], "/operator/replicas"),
        (["gateway.port=http"], "/gateway/port"),
        (["crds.enabled=maybe"], "/crds/enabled"),
        (["operator.bogus=1"], "bogus"),
        (["sandbox.sizes.2g.cpuLimit=1"], "2g"),
        (["logLevel=LOUD"], "/logLevel"),
        (["watchNamespaces={Team_A}"], "/watchNamespaces"),
        (["gateway.service.type=Magic"], "/gateway/service/type"),
        (["egress.mode=calico"], "/egress/mode"),
        (["metrics.serviceMonitor.bogus=1"], "bogus"),
        (["metrics.serviceMonitor.interval=often"], "/metrics/serviceMonitor/interval"),
        (["gateway.metricsPort=0"], "/gateway/metricsPort"),
    ],
)
def test_schema_rejects_wrong_types_and_unknown_keys(sets, message):
    args = ["template", "k", str(CHART), "--kube-version", KUBE_VERSION]
    for item in sets:
        args += ["--set", item]
    proc = helm(*args, check=False)
    assert proc.returncode != 0, proc.stdout[:500]
    assert message in proc.stderr, proc.stderr


def _schema_paths(schema: dict, root: dict, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Key paths of the chart's own closed objects (additionalProperties: false) of the schema.

    A `$ref` is a typed leaf (resources, probe timings, a quantity): its keys are optional and
    documented by Kubernetes, so it is not descended into.
    """
    paths = set()
    if schema.get("type") == "object" and schema.get("additionalProperties") is False:
        for key, sub in schema["properties"].items():
            paths.add(prefix + (key,))
            paths |= _schema_paths(sub, root, prefix + (key,))
    return paths


def _values_paths(values: dict, closed: set[tuple[str, ...]], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths = set()
    for key, value in values.items():
        path = prefix + (key,)
        paths.add(path)
        if isinstance(value, dict) and any(p[: len(path)] == path and len(p) > len(path) for p in closed):
            paths |= _values_paths(value, closed, path)
    return paths


def test_schema_and_values_yaml_describe_the_same_keys():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    closed = _schema_paths(schema, schema)
    assert _values_paths(values, closed) == closed


def _documented_keys(text: str) -> dict[tuple[str, ...], str]:
    """Every key of values.yaml (block mappings) → the comment block right above it."""
    found, stack, comment = {}, [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        match = re.match(r"^( *)([A-Za-z0-9_.-]+):", line)
        if not match or stripped.startswith("-"):
            comment = []
            continue
        indent = len(match.group(1)) // 2
        stack = stack[:indent] + [match.group(2)]
        found[tuple(stack)] = "\n".join(comment)
        comment = []
    return found


def test_every_value_is_documented_with_an_example():
    schema = json.loads((CHART / "values.schema.json").read_text())
    documented = _documented_keys((CHART / "values.yaml").read_text())
    closed = _schema_paths(schema, schema)
    leaves = {p for p in closed if not any(q[: len(p)] == p and len(q) > len(p) for q in closed)}
    for path in sorted(closed):
        comment = documented.get(path)
        if path[-1] in {"1g", "4g", "16g", "64g"} or path[-2:-1] in {("1g",), ("4g",), ("16g",), ("64g",)}:
            continue  # the sizes map is documented as a whole, on `sizes`
        assert comment is not None, f"{'.'.join(path)} is not in values.yaml"
        assert comment, f"{'.'.join(path)} has no comment"
        if path in leaves:
            assert "Example:" in comment, f"{'.'.join(path)} has no example"


POD_KNOBS = {"extraEnv", "resources", "podSecurityContext", "securityContext", "livenessProbe", "readinessProbe",
             "nodeSelector", "tolerations", "affinity", "topologySpreadConstraints", "priorityClassName",
             "podAnnotations", "podLabels"}


def test_the_readme_configuration_reference_names_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    closed = _schema_paths(schema, schema)
    leaves = {p for p in closed if not any(q[: len(p)] == p and len(q) > len(p) for q in closed)}
    readme = (REPO / "README.md").read_text()
    reference = readme[readme.index("## Configuration reference"):]
    for path in sorted(leaves):
        if path[0] in {"operator", "gateway", "egress"} and path[-1] in POD_KNOBS and len(path) == 2:
            assert f"`{path[-1]}`" in reference, f"README: the pod setting {path[-1]} is not listed"
        elif path[:2] != ("sandbox", "sizes"):
            assert f"`{'.'.join(path)}`" in reference, f"README: `{'.'.join(path)}` is not in the reference"


def test_values_yaml_itself_passes_the_schema_with_every_example_value(tmp_path):
    # NON_DEFAULT uses most documented examples; helm validates it against the schema.
    template(values=NON_DEFAULT, tmp_path=tmp_path)


# --- plain manifests -----------------------------------------------------------------------


def test_manifests_are_up_to_date_with_the_chart():
    current = (REPO / "manifests" / "kontainers.yaml").read_text()
    assert current == render_manifests.render(HELM), "manifests/ is stale: run `python manifests/render.py`"


def test_manifests_start_with_their_namespace_and_hold_no_helm_hooks():
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "kontainers.yaml").read_text()) if d]
    assert docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == "kontainers"
    for doc in docs[1:]:
        assert "helm.sh/hook" not in doc["metadata"].get("annotations", {})
        if doc["kind"] not in {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert doc["metadata"]["namespace"] == "kontainers", doc["metadata"]["name"]
