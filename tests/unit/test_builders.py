"""Pure builders of a Container's children: Pod, NetworkPolicy, sidecar Secret."""

from __future__ import annotations

import pytest

from kontainers.resources import names
from kontainers.resources.model import ContainerSpec
from kontainers.resources.network_policy import build_network_policy, same_policy_spec
from kontainers.resources.owner import ContainerRef, owned_by
from kontainers.resources.pod import ANNOTATION_INPUTS_HASH, ANNOTATION_SPEC_HASH, SandboxExtras, build_pod, \
    needs_replacement
from kontainers.resources.secret import build_sidecar_secret, new_token
from kontainers.settings import OperatorSettings

UID = "0b6f1c9e-7d0a-4a57-9d43-2f1c0e5b8a11"


def ref(**spec) -> ContainerRef:
    return ContainerRef(name="demo", namespace="tenant-a", uid=UID, spec=ContainerSpec(name="Demo", **spec))


def containers(pod):
    return {c["name"]: c for c in pod["spec"]["containers"]}


@pytest.mark.parametrize("size, quantity", [("1g", "1Gi"), ("4g", "4Gi"), ("16g", "16Gi"), ("64g", "64Gi")])
def test_runtime_memory_limit_is_exactly_the_size(size, quantity):
    settings = OperatorSettings()
    pod = build_pod(ref(memory_limit=size), settings)
    resources = containers(pod)["sandbox"]["resources"]
    assert resources["limits"]["memory"] == quantity
    assert resources["requests"] == {"memory": settings.memory_requests[size], "cpu": settings.cpu_requests[size]}
    assert resources["limits"]["cpu"] == settings.cpu_limits[size]


def test_requests_and_cpu_come_from_settings():
    settings = OperatorSettings(memory_requests={"1g": "1Gi"}, cpu_requests={"1g": "2"}, cpu_limits={})
    resources = containers(build_pod(ref(), settings))["sandbox"]["resources"]
    assert resources == {"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi", "cpu": "2"}}


def test_pod_identity_labels_and_owner():
    r = ref()
    pod = build_pod(r, OperatorSettings())
    meta = pod["metadata"]
    assert meta["name"] == names.pod_name("demo", UID) and meta["namespace"] == "tenant-a"
    assert meta["labels"][names.LABEL_CONTAINER_ID] == names.container_id(UID)
    assert meta["labels"][names.LABEL_MANAGED_BY] == "kontainers"
    assert meta["labels"][names.LABEL_CONTAINER] == "demo"
    assert owned_by(pod, UID) and not owned_by(pod, "other")
    owner = meta["ownerReferences"][0]
    assert owner["apiVersion"] == "kontainers.dev/v1alpha1" and owner["kind"] == "Container"


def test_runtime_and_sidecar_containers():
    settings = OperatorSettings(sidecar_port=9091, sandbox_image="python:3.12-slim", sidecar_image="k:1")
    pod = build_pod(ref(), settings)
    sandbox, files = containers(pod)["sandbox"], containers(pod)["files"]
    assert sandbox["image"] == "python:3.12-slim" and sandbox["command"] == ["sleep", "infinity"]
    assert files["image"] == "k:1" and files["args"] == ["sidecar"]
    assert files["ports"] == [{"name": "files", "containerPort": 9091, "protocol": "TCP"}]
    assert files["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "files"}
    env = {e["name"]: e for e in files["env"]}
    assert env["KONTAINERS_SIDECAR_PORT"]["value"] == "9091"
    assert env["KONTAINERS_SIDECAR_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": names.sidecar_secret_name("demo", UID), "key": "token"}
    # the sandbox never sees the sidecar token
    assert all("TOKEN" not in e["name"] for e in sandbox["env"])
    for c in (sandbox, files):
        assert {"name": "data", "mountPath": "/mnt/data"} in c["volumeMounts"]
    data = next(v for v in pod["spec"]["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "emptyDir": {"sizeLimit": settings.data_size_limit}}


def test_pod_is_hardened_for_restricted():
    pod = build_pod(ref(), OperatorSettings(runtime_class_name="gvisor"))
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/tmp", "/mnt/data"}
    # only volume types PodSecurity `restricted` allows
    assert all(set(v) - {"name"} <= {"emptyDir", "secret", "configMap", "projected"} for v in spec["volumes"])
    assert "runtimeClassName" not in build_pod(ref(), OperatorSettings())["spec"]


def test_extras_extend_the_runtime_container_and_change_the_hash():
    plain = build_pod(ref(), OperatorSettings())
    extra = SandboxExtras(
        env=[{"name": "HTTPS_PROXY", "value": "http://10.0.0.1:3128"}],
        volumes=[{"name": "egress-ca", "configMap": {"name": "ca"}}],
        volume_mounts=[{"name": "egress-ca", "mountPath": "/etc/kontainers/ca", "readOnly": True}],
    )
    pod = build_pod(ref(), OperatorSettings(), [extra])
    sandbox = containers(pod)["sandbox"]
    assert {"name": "HTTPS_PROXY", "value": "http://10.0.0.1:3128"} in sandbox["env"]
    assert sandbox["volumeMounts"][-1]["name"] == "egress-ca"
    assert pod["spec"]["volumes"][-1]["name"] == "egress-ca"
    assert all(e["name"] != "HTTPS_PROXY" for e in containers(pod)["files"]["env"])
    assert pod["metadata"]["annotations"][ANNOTATION_SPEC_HASH] != plain["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    assert build_pod(ref(), OperatorSettings())["metadata"]["annotations"] == plain["metadata"]["annotations"]


def test_network_policy_disabled_has_no_egress():
    settings = OperatorSettings(gateway_namespace="kontainers", sidecar_port=8081)
    np = build_network_policy(ref(), settings)
    spec = np["spec"]
    assert np["metadata"]["name"] == names.network_policy_name("demo", UID)
    assert spec["podSelector"] == {"matchLabels": {names.LABEL_CONTAINER_ID: names.container_id(UID)}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["egress"] == []
    assert spec["ingress"] == [{
        "from": [{"podSelector": {"matchLabels": settings.gateway_pod_labels},
                  "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kontainers"}}}],
        "ports": [{"protocol": "TCP", "port": 8081}],
    }]


def test_network_policy_allowlist_reaches_only_the_egress_proxy():
    settings = OperatorSettings(egress_namespace="kontainers", egress_port=3128)
    np = build_network_policy(ref(network_policy={"type": "allowlist", "allowed_domains": ["a.example.com"]}), settings)
    assert np["spec"]["egress"] == [{
        "to": [{"podSelector": {"matchLabels": settings.egress_pod_labels},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kontainers"}}}],
        "ports": [{"protocol": "TCP", "port": 3128}],
    }]
    with_dns = build_network_policy(
        ref(network_policy={"type": "allowlist", "allowed_domains": ["a.example.com"]}),
        settings.model_copy(update={"allowlist_dns": True}))
    assert [p["port"] for rule in with_dns["spec"]["egress"] for p in rule["ports"]] == [3128, 53, 53]


def test_network_policy_peer_in_any_namespace_when_unset():
    np = build_network_policy(ref(), OperatorSettings(gateway_namespace=None))
    assert np["spec"]["ingress"][0]["from"][0]["namespaceSelector"] == {}


def test_same_policy_spec_ignores_what_the_api_server_omits_and_nothing_else():
    spec = build_network_policy(ref(), OperatorSettings(gateway_namespace=None))["spec"]
    stored = {key: value for key, value in spec.items() if key != "egress"}  # `egress: []` comes back absent
    assert same_policy_spec(stored, spec)
    assert same_policy_spec({**stored, "egress": None}, spec)
    assert not same_policy_spec({**stored, "egress": [{}]}, spec)  # egress opened to everything
    selector = {"matchLabels": {**spec["podSelector"]["matchLabels"], "extra": "x"}}
    assert not same_policy_spec({**stored, "podSelector": selector}, spec)  # selects no pod
    peer = spec["ingress"][0]["from"][0]
    no_namespaces = [{"from": [{"podSelector": peer["podSelector"]}], "ports": spec["ingress"][0]["ports"]}]
    assert not same_policy_spec({**stored, "ingress": no_namespaces}, spec)  # `{}` (all) differs from absent
    assert not same_policy_spec({**stored, "policyTypes": ["Ingress"]}, spec)
    assert not same_policy_spec(None, spec)


def test_sidecar_secret():
    token = new_token()
    secret = build_sidecar_secret(ref(), token)
    assert secret["metadata"]["name"] == names.sidecar_secret_name("demo", UID)
    assert secret["stringData"] == {"token": token}
    assert owned_by(secret, UID)
    assert len(token) >= 40 and new_token() != token


def test_long_names_fit_label_values():
    long_name = "a" * 200
    r = ContainerRef(name=long_name, namespace="n", uid=UID, spec=ContainerSpec(name="x"))
    labels = build_pod(r, OperatorSettings())["metadata"]["labels"]
    assert len(labels[names.LABEL_CONTAINER]) <= 63
    assert names.label_value(long_name) != names.label_value("a" * 199)
    assert len(names.pod_name(long_name, UID)) <= 63


def test_container_ref_from_body():
    body = {"metadata": {"name": "c", "namespace": "n", "uid": UID, "generation": 3},
            "spec": {"name": "x", "memoryLimit": "16g"}}
    r = ContainerRef.from_body(body)
    assert (r.generation, r.spec.memory_limit, r.id) == (3, "16g", names.container_id(UID))


def test_network_policy_allowlist_also_reaches_an_egress_proxy_outside_the_cluster():
    settings = OperatorSettings(egress_namespace="kontainers", egress_ip_blocks=["192.0.2.10/32"])
    np = build_network_policy(ref(network_policy={"type": "allowlist", "allowed_domains": ["a.example.com"]}), settings)
    assert np["spec"]["egress"][0]["to"][1:] == [{"ipBlock": {"cidr": "192.0.2.10/32"}}]
    disabled = build_network_policy(ref(), settings)
    assert disabled["spec"]["egress"] == []  # a proxy address opens nothing for `disabled`


def test_sandbox_pods_go_where_the_settings_place_them():
    assert "nodeSelector" not in build_pod(ref(), OperatorSettings())["spec"]
    toleration = {"key": "pool", "value": "sandboxes", "effect": "NoSchedule"}
    placed = build_pod(ref(), OperatorSettings(sandbox_node_selector={"pool": "sandboxes"},
                                               sandbox_tolerations=[toleration]))
    assert placed["spec"]["nodeSelector"] == {"pool": "sandboxes"}
    assert placed["spec"]["tolerations"] == [toleration]
    assert placed["metadata"]["annotations"][ANNOTATION_SPEC_HASH] != \
        build_pod(ref(), OperatorSettings())["metadata"]["annotations"][ANNOTATION_SPEC_HASH]


def test_an_upgraded_template_keeps_running_pods_and_a_changed_container_replaces_them():
    running = build_pod(ref(), OperatorSettings())
    upgraded = OperatorSettings(sidecar_image="kontainers:next", sandbox_image="sandbox:next",
                                cpu_requests={"1g": "1"}, sidecar_requests={"cpu": "20m"})
    new_template = build_pod(ref(), upgraded)
    assert new_template["metadata"]["annotations"][ANNOTATION_SPEC_HASH] != \
        running["metadata"]["annotations"][ANNOTATION_SPEC_HASH]  # a new pod gets the new template
    assert not needs_replacement(running, new_template)  # the running one keeps its files
    assert needs_replacement(running, build_pod(ref(memory_limit="4g"), upgraded))
    proxy = SandboxExtras(env=[{"name": "HTTPS_PROXY", "value": "http://10.0.0.1:3128"}])
    assert needs_replacement(running, build_pod(ref(), OperatorSettings(), [proxy]))


def test_a_pod_from_before_the_inputs_digest_is_kept_unless_its_size_changed():
    older = build_pod(ref(), OperatorSettings())
    del older["metadata"]["annotations"][ANNOTATION_INPUTS_HASH]
    assert not needs_replacement(older, build_pod(ref(), OperatorSettings(sidecar_image="kontainers:next")))
    assert needs_replacement(older, build_pod(ref(memory_limit="4g"), OperatorSettings()))


def test_the_sidecar_readiness_gate_is_added_only_when_asked_for():
    assert "readinessGates" not in build_pod(ref(), OperatorSettings())["spec"]
    gated = build_pod(ref(), OperatorSettings(sidecar_readiness_gate=True))["spec"]
    assert gated["readinessGates"] == [{"conditionType": names.CONDITION_SIDECAR_READY}]
