"""What an allowlist sandbox needs to use the egress proxy: pure builders the operator calls.

For a Container with `networkPolicy.type: allowlist` the runtime container gets
- HTTP_PROXY / HTTPS_PROXY (+ lowercase) pointing at the proxy, NO_PROXY for loopback only;
- the proxy's CA certificate mounted at `CA_FILE` and named by SSL_CERT_FILE, REQUESTS_CA_BUNDLE,
  CURL_CA_BUNDLE, NODE_EXTRA_CA_CERTS, PIP_CERT and GIT_SSL_CAINFO: every TLS connection goes
  through the proxy, so its CA is the only one the sandbox needs;
- for each domain secret `name`, an environment variable `name` holding its placeholder
  (kontainers.egress.placeholders) — never the value.
`disabled` Containers get none of this (and no egress at all from their NetworkPolicy).

The CA certificate reaches the tenant namespace as a per-Container ConfigMap (`ca_configmap`, a
child of the Container like its Pod), copied from the ConfigMap `kontainers-egress-ca` that the
proxy publishes in its own namespace; only the public certificate ever leaves that namespace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kontainers.egress import placeholders

CA_DIR = "/etc/kontainers/egress-ca"
CA_KEY = "ca.crt"
CA_FILE = f"{CA_DIR}/{CA_KEY}"
CA_VOLUME = "egress-ca"
NO_PROXY = "localhost,127.0.0.1,::1"

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
CA_VARIABLES = (
    "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "PIP_CERT",
    "GIT_SSL_CAINFO",
)
RESERVED = frozenset(PROXY_VARIABLES + NO_PROXY_VARIABLES + CA_VARIABLES)


@dataclass
class SandboxEgress:
    """Additions to the runtime container and the pod for one Container."""

    env: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)


def proxy_env(proxy_url: str, ca_file: str = CA_FILE, no_proxy: str = NO_PROXY) -> list[dict[str, str]]:
    env = [{"name": name, "value": proxy_url} for name in PROXY_VARIABLES]
    env += [{"name": name, "value": no_proxy} for name in NO_PROXY_VARIABLES]
    env += [{"name": name, "value": ca_file} for name in CA_VARIABLES]
    return env


def domain_secret_env(uid: str, domain_secrets: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One variable per distinct secret name (the same name for two domains shares a placeholder);
    names that would shadow the proxy wiring, or are not variable names, are left out."""
    env: list[dict[str, str]] = []
    seen: set[str] = set()
    for entry in domain_secrets:
        name = entry.get("name", "")
        if name in seen or name in RESERVED or not placeholders.is_env_name(name):
            continue
        seen.add(name)
        env.append({"name": name, "value": placeholders.placeholder(uid, name)})
    return env


def ca_volume(configmap_name: str) -> dict[str, Any]:
    return {
        "name": CA_VOLUME,
        "configMap": {"name": configmap_name, "items": [{"key": CA_KEY, "path": CA_KEY}]},
    }


def ca_volume_mount() -> dict[str, Any]:
    return {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}


def ca_configmap(name: str, namespace: str, ca_pem: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The per-Container copy of the proxy CA certificate (public part only)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "data": {CA_KEY: ca_pem},
    }


def sandbox_egress(spec: dict[str, Any], uid: str, proxy_url: str, ca_configmap_name: str) -> SandboxEgress:
    """Everything the runtime container of one Container needs, from its spec (camelCase)."""
    network = spec.get("networkPolicy") or {}
    if network.get("type") != "allowlist":
        return SandboxEgress()
    env = domain_secret_env(uid, network.get("domainSecrets") or []) + proxy_env(proxy_url)
    return SandboxEgress(env=env, volumes=[ca_volume(ca_configmap_name)], volume_mounts=[ca_volume_mount()])
