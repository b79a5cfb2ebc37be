"""One table of domain names, three readers: the gateway's wire rule, the CRD's CEL rule, the egress proxy.

The CEL rule is taken from the generated CRD and run as its rule text says (`self.matches(a) &&
!self.matches(b)` with `maxLength`), so a change to either rule that makes them disagree fails here.
"""

from __future__ import annotations

import re

import pytest

from kontainers.api import domains
from kontainers.resources.crd import build_crd

# (given, the wire rule's normal form or None when refused, the egress pattern's normal form or None)
LONGEST = ("a" * 63 + ".") * 3 + "a" * 61  # 253 characters
TABLE = [
    # valid
    ("example.com", "example.com", "example.com"),
    ("api.example.com", "api.example.com", "api.example.com"),
    ("a.b.example.co.uk", "a.b.example.co.uk", "a.b.example.co.uk"),
    ("a-b.example.com", "a-b.example.com", "a-b.example.com"),
    ("ab--cd.example.com", "ab--cd.example.com", "ab--cd.example.com"),
    ("1password.com", "1password.com", "1password.com"),
    ("x.0day", "x.0day", "x.0day"),
    ("a" * 63 + ".com", "a" * 63 + ".com", "a" * 63 + ".com"),
    (LONGEST, LONGEST, LONGEST),
    # spellings the gateway folds (the CEL rule sees only the folded form, or upper case from kubectl)
    ("API.Example.COM", "api.example.com", "api.example.com"),
    ("EXAMPLE.com.", "example.com", "example.com"),
    ("  api.example.com ", "api.example.com", "api.example.com"),
    ("example.com\n", "example.com", "example.com"),
    # wildcards
    ("*.example.com", "*.example.com", "*.example.com"),
    ("*.a.b.example.com", "*.a.b.example.com", "*.a.b.example.com"),
    ("*.Example.ORG.", "*.example.org", "*.example.org"),
    ("*", None, None),
    ("*.", None, None),
    ("*.com", None, None),
    ("*example.com", None, None),
    ("**.example.com", None, None),
    ("*.*.example.com", None, None),
    ("a.*.example.com", None, None),
    # IDNA: the wire takes A-labels only; the proxy folds Unicode spellings to them
    ("xn--bcher-kva.example", "xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("*.xn--bcher-kva.example", "*.xn--bcher-kva.example", "*.xn--bcher-kva.example"),
    ("bücher.example", None, "xn--bcher-kva.example"),
    ("*.bücher.example", None, "*.xn--bcher-kva.example"),
    ("ＥＸＡＭＰＬＥ．com", None, "example.com"),
    # names the proxy tolerates in traffic but the wire does not take
    ("_dmarc.example.com", None, "_dmarc.example.com"),
    ("localhost", None, "localhost"),
    # invalid everywhere
    ("", None, None),
    (".", None, None),
    ("a..example.com", None, None),
    ("-a.example.com", None, None),
    ("a-.example.com", None, None),
    ("a" * 64 + ".com", None, None),
    (LONGEST + "a", None, None),
    ("exa mple.com", None, None),
    ("exa\nmple.com", None, None),
    ("http://example.com", None, None),
    ("example.com/path", None, None),
    ("example.com:443", None, None),
    ("user@example.com", None, None),
    ("1.2.3.4", None, None),
    ("169.254.169.254", None, None),
    ("example.123", None, None),
    ("[::1]", None, None),
    ("::1", None, None),
]


def _wire(given: str) -> str | None:
    try:
        return domains.normalize_domain(given)
    except ValueError:
        return None


def _egress(given: str) -> str | None:
    try:
        return domains.normalize_pattern(given)
    except domains.DomainError:
        return None


def _re2(pattern: str) -> re.Pattern[str]:
    # RE2's `$` matches only at the very end; Python's also before a final newline.
    return re.compile(pattern.replace("$", r"\Z"))


def _cel_checks() -> list:
    """The CRD's rule for every domain field, as a function of the string it validates."""
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    policy = spec["properties"]["networkPolicy"]["properties"]
    schemas = [policy["allowedDomains"]["items"], policy["domainSecrets"]["items"]["properties"]["domain"]]
    checks = []
    for schema in schemas:
        (validation,) = schema["x-kubernetes-validations"]
        found = re.fullmatch(r"self\.matches\('([^']*)'\) && !self\.matches\('([^']*)'\)", validation["rule"])
        assert found, f"the domain rule changed shape, teach this test to run it: {validation['rule']}"
        must, must_not = _re2(found[1]), _re2(found[2])
        max_length = schema["maxLength"]
        checks.append(lambda s, must=must, must_not=must_not, max_length=max_length: (
            len(s) <= max_length and must.search(s) is not None and must_not.search(s) is None))
    return checks


CEL = _cel_checks()


@pytest.mark.parametrize(("given", "wire", "egress"), TABLE)
def test_the_three_readers_agree(given: str, wire: str | None, egress: str | None) -> None:
    assert _wire(given) == wire
    assert _egress(given) == egress
    for cel in CEL:
        # The API server takes exactly what the gateway takes unchanged (but for case) ...
        assert cel(given) == (wire is not None and wire == given.lower())
        # ... and whatever the gateway writes.
        if wire is not None:
            assert cel(wire)
    if wire is not None or any(cel(given) for cel in CEL):
        # The proxy enforces exactly the name the API server stored.
        assert _egress(given) == given.strip().lower().rstrip(".")


def test_wildcards_cover_subdomains_only() -> None:
    assert domains.domain_matches("*.example.com", "a.b.example.com")
    assert not domains.domain_matches("*.example.com", "example.com")
    assert not domains.domain_matches("*.example.com", "badexample.com")
    assert domains.allowed(("example.com", "*.example.com"), "example.com")
