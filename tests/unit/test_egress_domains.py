"""The allowlist matching rules: normal form, wildcards, case, trailing dots, IP literals, punycode."""

from __future__ import annotations

import pytest

from kontainers.api import domains
from kontainers.egress.policy import ContainerPolicy, Refused, check_destination, same_host

PORTS = frozenset({443, 80})


def policy(*patterns: str) -> ContainerPolicy:
    return ContainerPolicy("cntr_x", allowed_domains=tuple(domains.normalize_pattern(p) for p in patterns))


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("example.com", "example.com"),
        ("EXAMPLE.Com", "example.com"),
        ("example.com.", "example.com"),
        ("  api.example.com ", "api.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("ＥＸＡＭＰＬＥ．com", "example.com"),  # full-width letters and dot (UTS #46 mapping)
        ("_dmarc.example.com", "_dmarc.example.com"),
    ],
)
def test_normal_form(given: str, normal: str) -> None:
    assert domains.normalize_host(given) == normal


@pytest.mark.parametrize(
    "bad",
    ["", ".", "exa mple.com", "https://example.com", "example.com/path", "example.com:443",
     "user@example.com", "-bad.example.com", "a" * 64 + ".com", "*.example.com", "exa\nmple.com",
     "[::1]"],
)
def test_unusable_hosts_are_rejected(bad: str) -> None:
    with pytest.raises(domains.DomainError):
        domains.normalize_host(bad)


@pytest.mark.parametrize(
    "literal",
    ["127.0.0.1", "10.1.2.3", "::1", "[::1]", "fe80::1%eth0", "2130706433", "0x7f.1", "0x7f000001",
     "017700000001", "127.1", "1.2.3.4.", "169.254.169.254"],
)
def test_ip_literals_in_any_spelling(literal: str) -> None:
    assert domains.is_ip_literal(literal)
    with pytest.raises(Refused) as refused:
        check_destination(policy("*.example.com"), literal, 443, PORTS)
    assert refused.value.kind in {"ip_literal", "bad_host"}


@pytest.mark.parametrize("name", ["example.com", "1password.com", "a1.example", "x.0day"])
def test_names_with_digits_are_not_ip_literals(name: str) -> None:
    assert not domains.is_ip_literal(name)


def test_exact_entry_matches_only_itself() -> None:
    p = policy("api.example.com")
    assert check_destination(p, "api.example.com", 443, PORTS) == "api.example.com"
    for other in ["example.com", "x.api.example.com", "api.example.com.evil.net", "evilapi.example.com"]:
        with pytest.raises(Refused):
            check_destination(p, other, 443, PORTS)


def test_wildcard_matches_subdomains_at_any_depth_but_not_the_apex() -> None:
    p = policy("*.example.com")
    assert check_destination(p, "a.example.com", 443, PORTS) == "a.example.com"
    assert check_destination(p, "a.b.example.com", 443, PORTS) == "a.b.example.com"
    for other in ["example.com", "badexample.com", "example.com.evil.net", "a.example.co"]:
        with pytest.raises(Refused) as refused:
            check_destination(p, other, 443, PORTS)
        assert refused.value.kind == "domain"


def test_apex_and_wildcard_together() -> None:
    p = policy("example.com", "*.example.com")
    assert check_destination(p, "example.com", 443, PORTS)
    assert check_destination(p, "www.example.com", 443, PORTS)


def test_case_and_trailing_dots_on_both_sides() -> None:
    p = policy("API.Example.COM.", "*.Example.ORG.")
    assert check_destination(p, "api.example.com.", 443, PORTS) == "api.example.com"
    assert check_destination(p, "WWW.EXAMPLE.org", 443, PORTS) == "www.example.org"


def test_punycode_and_unicode_spellings_are_the_same_name() -> None:
    unicode_entry = policy("bücher.example")
    punycode_entry = policy("xn--bcher-kva.example")
    for p in (unicode_entry, punycode_entry):
        assert check_destination(p, "xn--bcher-kva.example", 443, PORTS) == "xn--bcher-kva.example"
        assert check_destination(p, "Bücher.example", 443, PORTS) == "xn--bcher-kva.example"
    wildcard = policy("*.bücher.example")
    assert check_destination(wildcard, "shop.xn--bcher-kva.example", 443, PORTS)
    with pytest.raises(Refused):  # a look-alike (Cyrillic "е") is a different name
        check_destination(policy("example.com"), "еxample.com", 443, PORTS)


def test_ports() -> None:
    p = policy("example.com")
    assert check_destination(p, "example.com", 443, PORTS)
    assert check_destination(p, "example.com", 80, PORTS)
    for port in (22, 8443, 25, 0, 65535):
        with pytest.raises(Refused) as refused:
            check_destination(p, "example.com", port, PORTS)
        assert refused.value.kind == "port"
        assert "443" in str(refused.value)
    assert check_destination(p, "example.com", 8443, frozenset({8443}))


@pytest.mark.parametrize("bad", ["*", "*.com", "**.example.com", "*example.com", "a.*.example.com", "*.", "*.*.com"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(domains.DomainError):
        domains.normalize_pattern(bad)


def test_same_host_compares_normal_forms() -> None:
    assert same_host("API.example.com.", "api.example.com")
    assert same_host("bücher.example", "xn--bcher-kva.example")
    assert not same_host("other.example.com", "api.example.com")
    assert not same_host(None, "api.example.com")
    assert not same_host("127.0.0.1", "api.example.com")
