"""What counts as a domain in `network_policy.allowed_domains` and `domain_secrets[].domain`.

A DNS name (`api.example.com`) or a `*.` wildcard (`*.example.com`): letters, digits and
hyphens per label, at most 63 per label and 253 in all, a top-level label that is not all digits
(so IPv4 literals fail), no scheme, path, port, user info or IP literal. A trailing dot is
dropped and the result is lower-cased, so the egress proxy compares like with like.
"""

from __future__ import annotations

import re

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_NAME = re.compile(rf"^(?:\*\.)?(?:{_LABEL}\.)+(?!\d+$){_LABEL}$")
MAX_LENGTH = 253


def normalize_domain(value: str) -> str:
    """The canonical form of a domain, or ValueError saying why it is not one."""
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
    if len(domain) > MAX_LENGTH or not _NAME.match(domain):
        raise ValueError(
            f"{value!r} is not a valid domain: use a DNS name such as 'api.example.com' "
            "or a wildcard such as '*.example.com'"
        )
    return domain


def domain_matches(pattern: str, host: str) -> bool:
    """Whether `host` is covered by an allowlist entry (`*.x.y` covers subdomains of x.y only)."""
    if pattern.startswith("*."):
        return host == pattern or host.endswith(pattern[1:])
    return host == pattern
