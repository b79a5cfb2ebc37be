"""Identity, policies from Container resources, placeholders and the DNS-rebinding guard."""

from __future__ import annotations

import base64

import pytest

from kontainers.egress import placeholders
from kontainers.egress.policy import ContainerPolicy, DomainSecret, Refused, from_container
from kontainers.egress.registry import CredentialsRequired, Registry
from kontainers.egress.resolver import Resolver
from kontainers.resources import names


def container(uid: str = "uid-1", **network) -> dict:
    return {
        "apiVersion": names.API_VERSION, "kind": names.KIND,
        "metadata": {"name": "c1", "namespace": "tenant-a", "uid": uid},
        "spec": {"name": "c1", "networkPolicy": network},
        "status": {"status": "running", "podIP": "10.0.0.7"},
    }


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- policies from Container resources ---------------------------------------------------------

def test_disabled_containers_have_no_policy() -> None:
    assert from_container(container(type="disabled")) is None
    assert from_container({"metadata": {"uid": "u"}, "spec": {}}) is None


def test_allowlist_container_policy() -> None:
    obj = container(
        type="allowlist",
        allowedDomains=["API.example.com.", "*.Example.org", "not a domain"],
        domainSecrets=[
            {"domain": "api.example.com", "name": "API_KEY", "secretKeyRef": {"name": "c1-domain-secrets", "key": "API_KEY"}},
            {"domain": "api.example.com", "name": "bad name", "secretKeyRef": {"name": "s", "key": "k"}},
        ],
    )
    policy = from_container(obj)
    assert policy is not None
    assert policy.container_id == names.container_id("uid-1")
    assert policy.allowed_domains == ("api.example.com", "*.example.org")  # invalid entry dropped
    assert policy.pod_ip == "10.0.0.7" and policy.namespace == "tenant-a"
    (secret,) = policy.domain_secrets
    assert secret.name == "API_KEY" and secret.ref.name == "c1-domain-secrets"
    assert secret.placeholder == placeholders.placeholder("uid-1", "API_KEY")


def test_expired_container_keeps_no_pod_ip() -> None:
    obj = container(type="allowlist", allowedDomains=["example.com"])
    obj["status"]["status"] = "expired"
    assert from_container(obj).pod_ip is None


# -- identity ----------------------------------------------------------------------------------

@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    reg.put(ContainerPolicy("cntr_a", allowed_domains=("a.example",), pod_ip="10.0.0.1", proxy_token="tok-a"))
    reg.put(ContainerPolicy("cntr_b", allowed_domains=("b.example",), pod_ip="10.0.0.2"))
    return reg


def test_identify_by_pod_ip(registry: Registry) -> None:
    assert registry.identify("10.0.0.2", None).container_id == "cntr_b"


def test_unknown_client_is_refused(registry: Registry) -> None:
    with pytest.raises(Refused) as refused:
        registry.identify("10.9.9.9", None)
    assert refused.value.kind == "unknown_client"


def test_identify_by_credentials(registry: Registry) -> None:
    assert registry.identify("192.168.1.1", basic("cntr_a", "tok-a")).container_id == "cntr_a"


@pytest.mark.parametrize(
    "header",
    [basic("cntr_a", "wrong"), basic("cntr_b", ""), basic("cntr_zzz", "tok-a"), "Bearer tok-a",
     "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode()],
)
def test_bad_credentials(registry: Registry, header: str) -> None:
    with pytest.raises(CredentialsRequired):
        registry.identify("10.0.0.1", header)


def test_credentials_of_another_container_than_the_address(registry: Registry) -> None:
    with pytest.raises(Refused) as refused:
        registry.identify("10.0.0.2", basic("cntr_a", "tok-a"))
    assert refused.value.kind == "identity_mismatch"


def test_pod_ip_moves_with_the_container(registry: Registry) -> None:
    registry.put(ContainerPolicy("cntr_b", pod_ip="10.0.0.3"))
    assert registry.by_ip("10.0.0.2") is None
    assert registry.by_ip("10.0.0.3").container_id == "cntr_b"
    registry.remove("cntr_b")
    assert registry.by_ip("10.0.0.3") is None


def test_replace_all_drops_vanished_containers(registry: Registry) -> None:
    registry.replace_all([ContainerPolicy("cntr_b", pod_ip="10.0.0.2")])
    assert registry.by_id("cntr_a") is None and registry.by_ip("10.0.0.1") is None
    assert registry.by_ip("10.0.0.2").container_id == "cntr_b"


# -- domain secret values --------------------------------------------------------------------

async def test_values_are_loaded_once_and_control_characters_refused() -> None:
    calls = []

    async def loader(policy: ContainerPolicy, secret: DomainSecret) -> str:
        calls.append(secret.name)
        return {"GOOD": "v4lue", "BAD": "x\r\nInjected: 1"}[secret.name]

    reg = Registry(loader=loader)
    good = DomainSecret("api.example", "GOOD", placeholders.placeholder("u", "GOOD"))
    bad = DomainSecret("api.example", "BAD", placeholders.placeholder("u", "BAD"))
    policy = ContainerPolicy("cntr_u", domain_secrets=(good, bad))
    reg.put(policy)
    assert await reg.values(policy, (good, bad)) == {good.placeholder: "v4lue"}
    assert await reg.values(policy, (good,)) == {good.placeholder: "v4lue"}
    assert calls == ["GOOD", "BAD"]  # cached after the first load


async def test_a_failing_loader_leaves_the_placeholder() -> None:
    async def loader(policy, secret):
        raise KeyError("gone")

    reg = Registry(loader=loader)
    secret = DomainSecret("api.example", "K", placeholders.placeholder("u", "K"))
    policy = ContainerPolicy("cntr_u", domain_secrets=(secret,))
    assert await reg.values(policy, (secret,)) == {}


# -- placeholders --------------------------------------------------------------------------------

def test_placeholder_scheme() -> None:
    one = placeholders.placeholder("uid-1", "API_KEY")
    assert one == placeholders.placeholder("uid-1", "API_KEY")
    assert one != placeholders.placeholder("uid-2", "API_KEY")
    assert one != placeholders.placeholder("uid-1", "OTHER")
    assert placeholders.PATTERN.fullmatch(one)


def test_substitute_in_header_values() -> None:
    ph, other = placeholders.placeholder("u", "A"), placeholders.placeholder("u", "B")
    values = {ph: "s3cret"}
    assert placeholders.substitute(f"Bearer {ph}", values) == "Bearer s3cret"
    assert placeholders.substitute(f"{ph},{other}", values) == f"s3cret,{other}"  # B: not for this domain
    assert placeholders.substitute("no placeholder here", values) == "no placeholder here"
    encoded = base64.b64encode(f"user:{ph}".encode()).decode()
    swapped = placeholders.substitute(f"Basic {encoded}", values)
    assert base64.b64decode(swapped[6:]) == b"user:s3cret"


def test_scrub_turns_values_back_into_placeholders() -> None:
    ph = placeholders.placeholder("u", "A")
    assert placeholders.scrub("echo: s3cret!", {"s3cret": ph}) == f"echo: {ph}!"


# -- DNS rebinding -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
     "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:a00:1::1"],
)
async def test_internal_answers_are_refused(address: str) -> None:
    resolver = Resolver({"rebind.example": address})
    with pytest.raises(Refused) as refused:
        await resolver.resolve("rebind.example", 443)
    assert refused.value.kind == "private_address"


async def test_public_answer_is_pinned() -> None:
    resolver = Resolver({"public.example": "93.184.216.34"})
    assert await resolver.resolve("public.example", 443) == ("93.184.216.34",)
    resolver._host_map["public.example"] = "10.0.0.1"  # a rebinding answer within the pin window
    assert await resolver.resolve("public.example", 443) == ("93.184.216.34",)


async def test_loopback_only_when_the_test_setting_allows_it() -> None:
    assert await Resolver({"t.example": "127.0.0.1"}, allow_loopback=True).resolve("t.example", 443)
    with pytest.raises(Refused):
        await Resolver({"t.example": "10.0.0.1"}, allow_loopback=True).resolve("t.example", 443)
