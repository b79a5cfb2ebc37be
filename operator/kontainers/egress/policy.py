"""What one Container may reach, and the pure decision for one destination.

A `ContainerPolicy` is built from a Container resource (see `from_container`) or, for tests and
local runs, from a static policy file; the proxy never consults anything else.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from kontainers.api import domains
from kontainers.egress import placeholders
from kontainers.resources import names


class Refused(Exception):
    """A request the proxy will not forward; str(self) is the reason shown to the sandbox and logged.

    `kind` is a short, fixed label for metrics and log filtering (never holds request data).
    """

    def __init__(self, reason: str, kind: str = "policy") -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass(frozen=True)
class SecretRef:
    """Where a domain secret's value lives: key `key` of Secret `name` in the Container's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class DomainSecret:
    domain: str  # normalised pattern (exact, or `*.` wildcard)
    name: str  # the sandbox's environment variable
    placeholder: str
    ref: SecretRef | None = None


@dataclass(frozen=True)
class ContainerPolicy:
    container_id: str
    namespace: str = ""
    name: str = ""
    allowed_domains: tuple[str, ...] = ()
    domain_secrets: tuple[DomainSecret, ...] = ()
    pod_ip: str | None = None
    # Optional proxy credential (Proxy-Authorization: Basic <container id>:<token>).
    proxy_token: str | None = field(default=None, repr=False)

    def allows(self, host: str) -> bool:
        return domains.allowed(self.allowed_domains, host)

    def secrets_for(self, host: str) -> tuple[DomainSecret, ...]:
        return tuple(s for s in self.domain_secrets if domains.domain_matches(s.domain, host))

    def token_matches(self, token: str) -> bool:
        return self.proxy_token is not None and hmac.compare_digest(
            self.proxy_token.encode(), token.encode()
        )


def check_destination(
    policy: ContainerPolicy, host: str, port: int, allowed_ports: frozenset[int]
) -> str:
    """The normalised host if `policy` may reach host:port; raises Refused with the reason otherwise."""
    if domains.is_ip_literal(host):
        raise Refused(
            f"IP address destinations are not allowed ({host}); use a domain name", kind="ip_literal"
        )
    try:
        normal = domains.normalize_host(host)
    except domains.DomainError as error:
        raise Refused(str(error), kind="bad_host") from None
    if port not in allowed_ports:
        ports = ", ".join(str(p) for p in sorted(allowed_ports))
        raise Refused(f"port {port} is not allowed (allowed ports: {ports})", kind="port")
    if not policy.allows(normal):
        raise Refused(f"{normal} is not in this container's allowed_domains", kind="domain")
    return normal


def same_host(a: str | None, b: str) -> bool:
    """Whether a (possibly un-normalised) name denotes the normalised host b."""
    if a is None:
        return False
    try:
        return domains.normalize_host(a) == b
    except domains.DomainError:
        return False


def from_container(obj: dict[str, Any]) -> ContainerPolicy | None:
    """The policy of a Container resource, or None when it has no allowlist (disabled egress).

    Malformed entries are dropped rather than failing the whole Container: the API server's schema
    already rejects them, and dropping can only ever allow less.
    """
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    network = spec.get("networkPolicy") or {}
    if network.get("type") != "allowlist":
        return None
    uid = meta.get("uid", "")
    allowed: list[str] = []
    for entry in network.get("allowedDomains") or []:
        try:
            allowed.append(domains.normalize_pattern(entry))
        except domains.DomainError:
            continue
    secrets: list[DomainSecret] = []
    for entry in network.get("domainSecrets") or []:
        ref = entry.get("secretKeyRef") or {}
        try:
            domain = domains.normalize_pattern(entry.get("domain", ""))
        except domains.DomainError:
            continue
        if not placeholders.is_env_name(entry.get("name", "")) or not ref.get("name"):
            continue
        secrets.append(
            DomainSecret(
                domain=domain,
                name=entry["name"],
                placeholder=placeholders.placeholder(uid, entry["name"]),
                ref=SecretRef(name=ref["name"], key=ref.get("key", entry["name"])),
            )
        )
    state = status.get("status")
    pod_ip = status.get("podIP") if state not in {"expired", "failed"} else None
    return ContainerPolicy(
        container_id=names.container_id(uid),
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        allowed_domains=tuple(allowed),
        domain_secrets=tuple(secrets),
        pod_ip=pod_ip or None,
    )
