"""Which Container a connection comes from, and the values of its domain secrets.

The registry is an in-memory index fed by one source: the watch of Container resources
(`kontainers.egress.watch`) in a cluster, or a static policy file for tests and local runs.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml

from kontainers.api import domains
from kontainers.egress import placeholders
from kontainers.egress.policy import ContainerPolicy, DomainSecret, Refused

logger = logging.getLogger(__name__)

# Reads the value of one domain secret of one Container (from a Kubernetes Secret, in a cluster).
SecretLoader = Callable[[ContainerPolicy, DomainSecret], Awaitable[str]]


class CredentialsRequired(Refused):
    """Proxy credentials were sent but are wrong: answered with 407 so clients see an auth error."""


class Registry:
    def __init__(self, loader: SecretLoader | None = None) -> None:
        self._by_id: dict[str, ContainerPolicy] = {}
        self._by_ip: dict[str, str] = {}
        self._values: dict[tuple[str, str, str], str] = {}  # (container id, secret name, domain)
        self._loader = loader

    def __len__(self) -> int:
        return len(self._by_id)

    def put(self, policy: ContainerPolicy, ips: tuple[str, ...] = ()) -> None:
        old = self._by_id.get(policy.container_id)
        if old is not None and old.domain_secrets != policy.domain_secrets:
            self._forget_values(policy.container_id)
        self._drop_ips(policy.container_id)
        self._by_id[policy.container_id] = policy
        for ip in (policy.pod_ip, *ips):
            if ip:
                self._by_ip[ip] = policy.container_id

    def remove(self, container_id: str) -> None:
        self._by_id.pop(container_id, None)
        self._drop_ips(container_id)
        self._forget_values(container_id)

    def replace_all(self, policies: list[ContainerPolicy]) -> None:
        """Resync after a re-list: drop what disappeared, keep cached values of what stayed."""
        keep = {p.container_id for p in policies}
        for gone in set(self._by_id) - keep:
            self.remove(gone)
        for policy in policies:
            self.put(policy)

    def set_value(self, container_id: str, secret: DomainSecret, value: str) -> None:
        self._values[(container_id, secret.name, secret.domain)] = value

    def _drop_ips(self, container_id: str) -> None:
        for ip in [ip for ip, cid in self._by_ip.items() if cid == container_id]:
            del self._by_ip[ip]

    def _forget_values(self, container_id: str) -> None:
        for key in [k for k in self._values if k[0] == container_id]:
            del self._values[key]

    def by_ip(self, ip: str) -> ContainerPolicy | None:
        cid = self._by_ip.get(ip)
        return self._by_id.get(cid) if cid else None

    def by_id(self, container_id: str) -> ContainerPolicy | None:
        return self._by_id.get(container_id)

    def policies(self) -> list[ContainerPolicy]:
        return list(self._by_id.values())

    def identify(self, client_ip: str, proxy_authorization: str | None) -> ContainerPolicy:
        """The Container behind a connection: its pod IP, cross-checked with credentials if sent."""
        from_ip = self.by_ip(client_ip)
        if proxy_authorization:
            user, token = _parse_basic(proxy_authorization)
            policy = self.by_id(user)
            if policy is None or not policy.token_matches(token):
                raise CredentialsRequired("invalid proxy credentials", kind="bad_credentials")
            if from_ip is not None and from_ip.container_id != policy.container_id:
                raise Refused(
                    "proxy credentials belong to another container than this client address",
                    kind="identity_mismatch",
                )
            return policy
        if from_ip is None:
            raise Refused(
                f"client {client_ip} is not a running container with an allowlist",
                kind="unknown_client",
            )
        return from_ip

    async def values(self, policy: ContainerPolicy, secrets: tuple[DomainSecret, ...]) -> dict[str, str]:
        """placeholder → real value for the given secrets; values that cannot be loaded are left out."""
        found: dict[str, str] = {}
        for secret in secrets:
            key = (policy.container_id, secret.name, secret.domain)
            value = self._values.get(key)
            if value is None and self._loader is not None:
                try:
                    value = await self._loader(policy, secret)
                except Exception as error:  # noqa: BLE001 - a missing secret must not break the request
                    logger.warning(
                        "domain secret could not be loaded",
                        extra={"container": policy.container_id, "secret_name": secret.name,
                               "error": type(error).__name__},
                    )
                    continue
                self._values[key] = value
            if value is None:
                continue
            if not placeholders.usable_value(value):
                logger.warning(
                    "domain secret holds control characters; not substituted",
                    extra={"container": policy.container_id, "secret_name": secret.name},
                )
                continue
            found[secret.placeholder] = value
        return found


def _parse_basic(header: str) -> tuple[str, str]:
    scheme, _, blob = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise CredentialsRequired("proxy credentials must use the Basic scheme", kind="bad_credentials")
    try:
        user, sep, token = base64.b64decode(blob.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise CredentialsRequired("malformed proxy credentials", kind="bad_credentials") from None
    if not sep:
        raise CredentialsRequired("malformed proxy credentials", kind="bad_credentials")
    return user, token


def load_policy_file(path: Path, registry: Registry) -> int:
    """Fill the registry from a static file (tests and local runs only; no Kubernetes).

    Format (YAML or JSON)::

        containers:
          - uid: "3f1c…"                 # placeholders derive from it (see placeholders.py)
            id: cntr_…                   # optional; default derived from uid like the real id
            clientIPs: ["127.0.0.2"]     # addresses identifying the container
            proxyToken: "…"              # optional Proxy-Authorization password (user = id)
            allowedDomains: ["api.example.com", "*.example.org"]
            domainSecrets: [{domain: api.example.com, name: API_KEY, value: "…"}]
    """
    from kontainers.resources import names

    data: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    count = 0
    for entry in data.get("containers") or []:
        uid = str(entry["uid"])
        secrets = tuple(
            DomainSecret(
                domain=domains.normalize_pattern(s["domain"]),
                name=s["name"],
                placeholder=placeholders.placeholder(uid, s["name"]),
            )
            for s in entry.get("domainSecrets") or []
        )
        policy = ContainerPolicy(
            container_id=entry.get("id") or names.container_id(uid),
            allowed_domains=tuple(domains.normalize_pattern(d) for d in entry.get("allowedDomains") or []),
            domain_secrets=secrets,
            proxy_token=entry.get("proxyToken"),
        )
        registry.put(policy, ips=tuple(entry.get("clientIPs") or ()))
        for secret, raw in zip(secrets, entry.get("domainSecrets") or [], strict=True):
            registry.set_value(policy.container_id, secret, str(raw["value"]))
        count += 1
    return count
