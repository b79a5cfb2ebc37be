"""The operator's sandbox hook for allowlist Containers, against a faked CoreV1Api."""

from __future__ import annotations

import kopf
import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kontainers.egress import placeholders
from kontainers.egress.operator_hook import ca_configmap_name, egress_sandbox_hook, pinned_url
from kontainers.resources.owner import ContainerRef
from kontainers.settings import OperatorSettings

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


class FakeCore:
    def __init__(self, published: dict | None) -> None:
        self.maps: dict[tuple[str, str], client.V1ConfigMap] = {}
        if published is not None:
            self.maps[("kontainers", "kontainers-egress-ca")] = client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name="kontainers-egress-ca"), data=published)
        self.patches: list = []

    async def read_namespaced_config_map(self, name, namespace):
        try:
            return self.maps[(namespace, name)]
        except KeyError:
            raise ApiException(status=404) from None

    async def create_namespaced_config_map(self, namespace, body):
        key = (namespace, body["metadata"]["name"])
        if key in self.maps:
            raise ApiException(status=409)
        refs = [client.V1OwnerReference(api_version=r["apiVersion"], kind=r["kind"], name=r["name"],
                                        uid=r["uid"], controller=r["controller"])
                for r in body["metadata"]["ownerReferences"]]
        self.maps[key] = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=key[1], owner_references=refs), data=dict(body["data"]))
        return self.maps[key]

    async def patch_namespaced_config_map(self, name, namespace, body):
        self.patches.append(body)
        self.maps[(namespace, name)].data = dict(body["data"])


class FakeKube:
    def __init__(self, published: dict | None) -> None:
        self.core = FakeCore(published)


def ref(network: dict) -> ContainerRef:
    return ContainerRef.from_body({
        "metadata": {"name": "c1", "namespace": "tenant", "uid": "uid-1"},
        "spec": {"name": "c1", "networkPolicy": network},
    })


SETTINGS = OperatorSettings(egress_namespace="kontainers", egress_port=3128)
ALLOWLIST = {
    "type": "allowlist", "allowedDomains": ["api.example.com"],
    "domainSecrets": [{"domain": "api.example.com", "name": "API_KEY",
                       "secretKeyRef": {"name": "c1-domain-secrets", "key": "API_KEY"}}],
}


async def test_disabled_containers_are_left_alone() -> None:
    kube = FakeKube(None)
    assert await egress_sandbox_hook(kube, ref({"type": "disabled"}), SETTINGS) is None
    assert list(kube.core.maps) == []


async def test_waits_until_the_proxy_published_its_ca() -> None:
    with pytest.raises(kopf.TemporaryError):
        await egress_sandbox_hook(FakeKube(None), ref(ALLOWLIST), SETTINGS)


async def test_allowlist_wiring() -> None:
    kube = FakeKube({"ca.crt": CA, "proxy-url": "http://10.96.0.42:3128"})
    extras = await egress_sandbox_hook(kube, ref(ALLOWLIST), SETTINGS)
    env = {e["name"]: e["value"] for e in extras.env}
    assert env["HTTPS_PROXY"] == env["http_proxy"] == "http://10.96.0.42:3128"
    assert env["SSL_CERT_FILE"] == "/etc/kontainers/egress-ca/ca.crt"
    assert env["API_KEY"] == placeholders.placeholder("uid-1", "API_KEY")
    copy = kube.core.maps[("tenant", ca_configmap_name("c1", "uid-1"))]
    assert copy.data == {"ca.crt": CA}
    assert copy.metadata.owner_references[0].uid == "uid-1"
    assert extras.volumes[0]["configMap"]["name"] == copy.metadata.name

    # Idempotent; a rotated CA updates the copy in place.
    await egress_sandbox_hook(kube, ref(ALLOWLIST), SETTINGS)
    assert kube.core.patches == []
    kube.core.maps[("kontainers", "kontainers-egress-ca")].data["ca.crt"] = CA + "rotated"
    await egress_sandbox_hook(kube, ref(ALLOWLIST), SETTINGS)
    assert kube.core.maps[("tenant", copy.metadata.name)].data["ca.crt"].endswith("rotated")


async def test_a_foreign_configmap_of_the_same_name_is_not_taken_over() -> None:
    kube = FakeKube({"ca.crt": CA, "proxy-url": "http://10.96.0.42:3128"})
    name = ca_configmap_name("c1", "uid-1")
    kube.core.maps[("tenant", name)] = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={})
    with pytest.raises(kopf.PermanentError):
        await egress_sandbox_hook(kube, ref(ALLOWLIST), SETTINGS)


async def test_the_proxy_address_is_resolved_for_the_sandbox() -> None:
    assert await pinned_url("http://localhost:3128") in {"http://127.0.0.1:3128", "http://[::1]:3128"}
    assert await pinned_url("http://10.0.0.1:3128") == "http://10.0.0.1:3128"
    assert await pinned_url("http://does-not-resolve.invalid:3128") == "http://does-not-resolve.invalid:3128"


class FakeCustom:
    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.patches: list = []

    async def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        assert (group, version, plural) == ("cilium.io", "v2", "ciliumnetworkpolicies")
        if body["metadata"]["name"] in self.objects:
            raise ApiException(status=409)
        self.objects[body["metadata"]["name"]] = body

    async def patch_namespaced_custom_object(self, group, version, namespace, plural, name, body, **_):
        self.patches.append(body)
        self.objects[name]["spec"] = body["spec"]


async def test_cilium_mode_makes_a_fqdn_policy_and_no_proxy_wiring() -> None:
    kube = FakeKube(None)
    kube.custom = FakeCustom()
    settings = SETTINGS.model_copy(update={"egress_mode": "cilium"})
    network = {"type": "allowlist", "allowedDomains": ["api.example.com", "*.example.org"]}
    assert await egress_sandbox_hook(kube, ref(network), settings) is None
    (policy,) = kube.custom.objects.values()
    assert policy["kind"] == "CiliumNetworkPolicy" and policy["metadata"]["namespace"] == "tenant"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert policy["spec"]["endpointSelector"]["matchLabels"] == {"kontainers.dev/id": ref(network).id}
    assert policy["spec"]["egress"][1]["toFQDNs"] == [{"matchName": "api.example.com"},
                                                      {"matchPattern": "**.example.org"}]
    await egress_sandbox_hook(kube, ref(network), settings)  # idempotent: patched in place
    assert len(kube.custom.patches) == 1
    with pytest.raises(kopf.PermanentError):  # no proxy, so no domain secrets
        await egress_sandbox_hook(kube, ref(ALLOWLIST), settings)
