"""Optional Cilium mode: a CiliumNetworkPolicy with toFQDNs instead of the egress proxy.

When the cluster runs Cilium, the allowlist can be enforced by the CNI: the pod may resolve only
the allowed names (Cilium's DNS proxy answers and learns their IPs) and connect only to the IPs
learned for them, on the allowed ports. Trade-offs, compared with the proxy:
- no domain_secrets: nothing terminates TLS, so nothing can swap a placeholder (the operator must
  refuse or ignore domain secrets in this mode); no TLS SNI / Host header check either — a pod may
  send any SNI to an allowed IP, e.g. a CDN address shared with other sites;
- the sandbox needs DNS (to kube-dns, restricted to the allowed names), and IP-literal or
  rebinding refusals are whatever Cilium's FQDN cache allows;
- in exchange: no extra hop (native throughput and latency), every TCP/UDP protocol on the
  allowed ports works, and no CA is injected into the sandbox.
Wildcards: `*.example.com` is emitted as `**.example.com`, Cilium's multi-level prefix (1.19+),
to keep the proxy's meaning (sub-domains at any depth, not the apex). Older Cilium reads `**` like
`*`, i.e. one label only — narrower, never wider.
"""

from __future__ import annotations

from typing import Any

from kontainers.api import domains

API_VERSION = "cilium.io/v2"
KIND = "CiliumNetworkPolicy"
PLURAL = "ciliumnetworkpolicies"


def fqdn_selector(pattern: str) -> dict[str, str]:
    normal = domains.normalize_pattern(pattern)
    if normal.startswith("*."):
        return {"matchPattern": "*" + normal}  # "**.example.com"
    return {"matchName": normal}


def cilium_network_policy(
    name: str,
    namespace: str,
    pod_labels: dict[str, str],
    allowed_domains: list[str],
    ports: list[int] | tuple[int, ...] = (443, 80),
    dns_namespace: str = "kube-system",
    dns_pod_labels: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Egress for the pod selected by `pod_labels`: DNS for the allowed names, then those names only.

    Ingress is left to the Kubernetes NetworkPolicy the operator writes anyway (policies add up).
    """
    selectors = [fqdn_selector(d) for d in allowed_domains]
    dns_labels = {f"k8s:{k}": v for k, v in (dns_pod_labels or {"k8s-app": "kube-dns"}).items()}
    dns_labels["k8s:io.kubernetes.pod.namespace"] = dns_namespace
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {
            "endpointSelector": {"matchLabels": dict(pod_labels)},
            "egress": [
                {
                    "toEndpoints": [{"matchLabels": dns_labels}],
                    "toPorts": [{
                        "ports": [{"port": "53", "protocol": "UDP"}, {"port": "53", "protocol": "TCP"}],
                        # Only the allowed names may even be looked up: no DNS tunnelling out.
                        "rules": {"dns": selectors},
                    }],
                },
                {
                    "toFQDNs": selectors,
                    "toPorts": [{"ports": [{"port": str(p), "protocol": "TCP"} for p in ports]}],
                },
            ],
        },
    }
