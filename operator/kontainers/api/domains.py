"""The one grammar of a domain name, for every place that reads one.

Two doors, one grammar:

- **The wire rule** (`normalize_domain`): what `network_policy.allowed_domains` and
  `domain_secrets[].domain` accept, in the gateway and — as the CEL rule built from `DOMAIN_RE`
  and `NUMERIC_LAST_LABEL_RE` — in the Container CRD, so the API server refuses what the gateway
  refuses. A DNS name (`api.example.com`) or a `*.` wildcard (`*.example.com`): labels of letters,
  digits and inner hyphens, at most 63 per label and 253 in all, at least two labels, a last
  label that is not all digits (so IPv4 literals fail); no scheme, path, port, user info or IP
  literal. Internationalised names are given in their A-label form (`xn--bcher-kva.example`).
  A trailing dot is dropped and the result is lower-cased.

- **The egress rule** (`normalize_host`, `normalize_pattern`): everything the egress proxy
  compares (CONNECT host, TLS SNI, Host header, allowedDomains, the domain of a domain secret)
  is brought to one normal form first — the IDNA A-label form (UTS #46: case, full-width forms
  and Unicode spellings folded), lowercase, without a trailing dot — so that two names that mean
  the same thing never compare differently. It reads the same labels, and tolerates what real
  traffic carries beyond the wire rule: Unicode spellings, underscores (`_dmarc`) and single-label
  hosts. Every name the wire rule accepts keeps its (lower-case) spelling here; the table in
  tests/unit/test_domains.py holds both rules, and the CRD's CEL rule, to that.

Wildcards (`domain_matches`): `*.example.com` matches every name *below* example.com, at any
depth (`api.example.com`, `a.b.example.com`) but NOT the apex `example.com` itself — the same
reading as TLS wildcard certificates and Cilium's `toFQDNs.matchPattern`, so both egress modes
allow the same names; the CRD's CEL rule for "a domain secret is allowlisted" reads it the same
way. List the apex separately when it is wanted.
"""

from __future__ import annotations

import ipaddress
import re

import idna


def _label(chars: str) -> str:
    """One DNS label of `chars` and inner hyphens, 1..63 long (RE2 and Python alike: no lookaround)."""
    return f"[{chars}]([-{chars}]{{0,61}}[{chars}])?"


# The wire rule, spelled so that RE2 (CEL) and Python read it alike. Character classes instead of
# backslashes: CEL string literals reject `\.` escapes. Upper case is allowed because the CRD
# validates what kubectl users write; the gateway lower-cases before it matches.
LABEL_RE = _label("a-zA-Z0-9")
DOMAIN_RE = f"^([*][.])?({LABEL_RE}[.])+{LABEL_RE}$"
NUMERIC_LAST_LABEL_RE = "[.][0-9]+$"
CEL_RULE = f"self.matches('{DOMAIN_RE}') && !self.matches('{NUMERIC_LAST_LABEL_RE}')"
"""The CRD's `x-kubernetes-validations` rule for one domain (with `maxLength: MAX_LENGTH`)."""
MAX_LENGTH = 253

_DOMAIN = re.compile(DOMAIN_RE)
_NUMERIC_LAST_LABEL = re.compile(NUMERIC_LAST_LABEL_RE)
# The egress rule's label: the wire label in lower case, plus underscores (real service names
# such as _dmarc carry them).
_HOST_LABEL = re.compile(f"^{_label('a-z0-9_')}$")


class DomainError(ValueError):
    """A host or pattern that is not a usable DNS name; the message says why."""


def is_wire_domain(domain: str) -> bool:
    """Whether `domain`, as written, passes the wire rule (what the CRD's CEL rule checks)."""
    return (len(domain) <= MAX_LENGTH and _DOMAIN.fullmatch(domain) is not None
            and _NUMERIC_LAST_LABEL.search(domain) is None)


def normalize_domain(value: str) -> str:
    """The canonical form of a domain on the wire, or ValueError saying why it is not one."""
    domain = value.strip().lower()
    if domain.endswith(".") and not domain.endswith(".."):
        domain = domain[:-1]
    if not domain:
        raise ValueError("must not be empty")
    if "://" in domain or "/" in domain:
        raise ValueError(f"{value!r} must be a bare domain name without scheme or path")
    if ":" in domain or domain.startswith("["):
        raise ValueError(f"{value!r} must be a domain name without port (IP literals are not allowed)")
    if "@" in domain:
        raise ValueError(f"{value!r} must be a bare domain name without user info")
    if not is_wire_domain(domain):
        raise ValueError(
            f"{value!r} is not a valid domain: use a DNS name such as 'api.example.com' "
            "or a wildcard such as '*.example.com'"
        )
    return domain


def domain_matches(pattern: str, host: str) -> bool:
    """Whether a normalised `host` is covered by one normalised allowlist entry (module docstring)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])  # pattern[1:] is ".example.com": sub-domains only
    return host == pattern


def allowed(patterns: list[str] | tuple[str, ...] | frozenset[str], host: str) -> bool:
    """Whether any of the normalised `patterns` covers the normalised `host`."""
    return any(domain_matches(pattern, host) for pattern in patterns)


def is_ip_literal(host: str) -> bool:
    """True for anything a resolver would treat as an address rather than a name.

    Besides dotted quads and IPv6 (with or without brackets) this catches the legacy spellings that
    inet_aton still accepts — `2130706433`, `0x7f.1`, `017700000001` — by refusing every name whose
    last label is numeric: no public top-level domain is.
    """
    text = host.strip().rstrip(".").strip("[]")
    if not text:
        return False
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
        return True
    except ValueError:
        pass
    last = text.rsplit(".", 1)[-1].lower()
    return bool(re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)", last))


def normalize_host(host: str) -> str:
    """The egress normal form of a concrete host name (no wildcard); raises DomainError if unusable."""
    if not isinstance(host, str):
        raise DomainError("host must be a string")
    text = host.strip()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise DomainError("empty host name")
    if any(c in text for c in "/:@?#[] \\%") or any(ord(c) < 0x21 for c in text):
        raise DomainError(f"not a host name: {host!r}")
    if is_ip_literal(text):
        raise DomainError(f"IP address literals are not allowed: {host!r}")
    if "*" in text:
        raise DomainError(f"wildcards are only allowed in patterns: {host!r}")
    try:
        # UTS #46 mapping folds case and full-width forms before the IDNA 2008 encoding.
        ascii_name = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        # idna refuses underscores (and `ab--c` labels); accept plain-ASCII names it rejects only
        # for such reasons.
        lowered = text.lower()
        if lowered.isascii() and all(_HOST_LABEL.match(label) for label in lowered.split(".")):
            ascii_name = lowered
        else:
            raise DomainError(f"not a valid host name: {host!r} ({error})") from None
    ascii_name = ascii_name.lower()
    if len(ascii_name) > MAX_LENGTH or not all(_HOST_LABEL.match(label) for label in ascii_name.split(".")):
        raise DomainError(f"not a valid host name: {host!r}")
    return ascii_name


def normalize_pattern(pattern: str) -> str:
    """The egress normal form of an allowlist entry: a host name, or `*.` followed by a host name."""
    text = pattern.strip() if isinstance(pattern, str) else pattern
    if isinstance(text, str) and text.startswith("*."):
        base = normalize_host(text[2:])
        if "." not in base:
            raise DomainError(f"a wildcard needs at least two labels after '*.': {pattern!r}")
        return "*." + base
    return normalize_host(text)
