"""Host names and allowlist patterns: one normal form, one matching rule.

Everything the proxy compares (CONNECT host, TLS SNI, Host header, allowedDomains, the domain of a
domain secret) goes through `normalize_host` / `normalize_pattern` first, so that case, a trailing
dot or a Unicode spelling can never make two names that mean the same thing compare differently.

The normal form is the IDNA A-label form (punycode), lowercase, without a trailing dot.

Wildcards: `*.example.com` matches every name *below* example.com, at any depth
(`api.example.com`, `a.b.example.com`) but NOT the apex `example.com` itself — the same reading as
TLS wildcard certificates and Cilium's `toFQDNs.matchPattern`, so both egress modes allow the same
names. List the apex separately when it is wanted.
"""

from __future__ import annotations

import ipaddress
import re

import idna

# One DNS label in A-label form: letters, digits, hyphens (underscores appear in real service
# names such as _dmarc, so they are tolerated), no leading/trailing hyphen, 1..63 characters.
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_MAX_NAME = 253


class DomainError(ValueError):
    """A host or pattern that is not a usable DNS name; the message says why."""


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
    """The normal form of a concrete host name (no wildcard); raises DomainError if unusable."""
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
        # idna refuses underscores; accept plain-ASCII names it rejects only for that reason.
        lowered = text.lower()
        if lowered.isascii() and all(_LABEL.match(label) for label in lowered.split(".")):
            ascii_name = lowered
        else:
            raise DomainError(f"not a valid host name: {host!r} ({error})") from None
    ascii_name = ascii_name.lower()
    if len(ascii_name) > _MAX_NAME or not all(_LABEL.match(label) for label in ascii_name.split(".")):
        raise DomainError(f"not a valid host name: {host!r}")
    return ascii_name


def normalize_pattern(pattern: str) -> str:
    """The normal form of an allowlist entry: a host name, or `*.` followed by a host name."""
    text = pattern.strip() if isinstance(pattern, str) else pattern
    if isinstance(text, str) and text.startswith("*."):
        base = normalize_host(text[2:])
        if "." not in base:
            raise DomainError(f"a wildcard needs at least two labels after '*.': {pattern!r}")
        return "*." + base
    return normalize_host(text)


def matches(pattern: str, host: str) -> bool:
    """Whether a normalised host is allowed by one normalised pattern (see module docstring)."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])  # pattern[1:] is ".example.com": sub-domains only
    return host == pattern


def allowed(patterns: list[str] | tuple[str, ...] | frozenset[str], host: str) -> bool:
    return any(matches(pattern, host) for pattern in patterns)
