"""Sandbox wiring for allowlist containers and the Cilium-mode policy builder."""

from __future__ import annotations

from kontainers.egress import placeholders
from kontainers.egress.cilium import cilium_network_policy
from kontainers.egress.sandbox import CA_FILE, ca_configmap, sandbox_egress

PROXY = "http://10.96.0.42:3128"


def allowlist(**extra) -> dict:
    return {"name": "c", "networkPolicy": {"type": "allowlist", "allowedDomains": ["api.example.com"], **extra}}


def env_map(env: list[dict]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in env}


def test_disabled_gets_no_proxy_and_no_mount() -> None:
    wiring = sandbox_egress({"networkPolicy": {"type": "disabled"}}, "uid", PROXY, "c-ca")
    assert wiring.env == [] and wiring.volumes == [] and wiring.volume_mounts == []


def test_allowlist_gets_proxy_env_and_ca_bundle() -> None:
    wiring = sandbox_egress(allowlist(), "uid", PROXY, "c-ca")
    env = env_map(wiring.env)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert env[name] == PROXY
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"):
        assert env[name] == CA_FILE
    (volume,) = wiring.volumes
    (mount,) = wiring.volume_mounts
    assert volume["configMap"]["name"] == "c-ca" and mount["name"] == volume["name"]
    assert CA_FILE.startswith(mount["mountPath"] + "/") and mount["readOnly"] is True


def test_domain_secrets_become_placeholders_never_values() -> None:
    spec = allowlist(domainSecrets=[
        {"domain": "api.example.com", "name": "API_KEY", "secretKeyRef": {"name": "c-domain-secrets", "key": "API_KEY"}},
        {"domain": "other.example.com", "name": "API_KEY", "secretKeyRef": {"name": "c-domain-secrets", "key": "x"}},
        {"domain": "api.example.com", "name": "HTTPS_PROXY", "secretKeyRef": {"name": "s", "key": "k"}},
        {"domain": "api.example.com", "name": "not-a-variable", "secretKeyRef": {"name": "s", "key": "k"}},
    ])
    env = sandbox_egress(spec, "uid-9", PROXY, "c-ca").env
    names = [e["name"] for e in env]
    assert names.count("API_KEY") == 1 and "not-a-variable" not in names
    assert env_map(env)["API_KEY"] == placeholders.placeholder("uid-9", "API_KEY")
    assert env_map(env)["HTTPS_PROXY"] == PROXY  # a secret cannot shadow the proxy wiring
    assert all("valueFrom" not in e for e in env)  # no Secret reference reaches the sandbox


def test_ca_configmap_holds_only_the_certificate() -> None:
    cm = ca_configmap("c-ca", "tenant", "-----BEGIN CERTIFICATE-----\n…", {"a": "b"})
    assert cm["kind"] == "ConfigMap" and list(cm["data"]) == ["ca.crt"]
    assert cm["metadata"] == {"name": "c-ca", "namespace": "tenant", "labels": {"a": "b"}}


def test_cilium_policy() -> None:
    policy = cilium_network_policy(
        "c-abc", "tenant", {"kontainers.dev/container": "c"},
        ["API.example.com.", "*.example.org", "bücher.example"], ports=[443],
    )
    assert policy["apiVersion"] == "cilium.io/v2" and policy["kind"] == "CiliumNetworkPolicy"
    spec = policy["spec"]
    assert spec["endpointSelector"] == {"matchLabels": {"kontainers.dev/container": "c"}}
    dns_rule, fqdn_rule = spec["egress"]
    expected = [{"matchName": "api.example.com"}, {"matchPattern": "**.example.org"},
                {"matchName": "xn--bcher-kva.example"}]
    assert fqdn_rule["toFQDNs"] == expected
    assert fqdn_rule["toPorts"] == [{"ports": [{"port": "443", "protocol": "TCP"}]}]
    assert dns_rule["toPorts"][0]["rules"]["dns"] == expected
    assert dns_rule["toEndpoints"][0]["matchLabels"] == {
        "k8s:k8s-app": "kube-dns", "k8s:io.kubernetes.pod.namespace": "kube-system"}
