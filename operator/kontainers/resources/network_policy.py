"""The NetworkPolicy of one Container's pod.

Ingress: only gateway pods, only to the sidecar port. Egress: none for `disabled`; for
`allowlist` only the egress proxy pods on the proxy port — domains cannot be expressed in a
NetworkPolicy, so the proxy enforces them. DNS is opened only when configured (the proxy being
addressed by name); the proxy resolves destination names itself.
"""

from __future__ import annotations

from typing import Any

from ..settings import OperatorSettings
from . import names
from .owner import ContainerRef

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace


def _peer(pod_labels: dict[str, str], namespace: str | None) -> dict[str, Any]:
    """Pods with these labels in `namespace` (None: in any namespace)."""
    namespaces = {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}} if namespace else {}
    return {"podSelector": {"matchLabels": dict(pod_labels)}, "namespaceSelector": namespaces}


def build_network_policy(ref: ContainerRef, settings: OperatorSettings) -> dict[str, Any]:
    egress: list[dict[str, Any]] = []
    if ref.spec.network_policy.type == "allowlist":
        egress.append({
            "to": [_peer(settings.egress_pod_labels, settings.egress_namespace)]
            + [{"ipBlock": {"cidr": cidr}} for cidr in settings.egress_ip_blocks],
            "ports": [{"protocol": "TCP", "port": settings.egress_port}],
        })
        if settings.allowlist_dns:
            egress.append({
                "to": [_peer(settings.dns_pod_labels, settings.dns_namespace)],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            })
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": ref.metadata(ref.network_policy_name, component="network-policy"),
        "spec": {
            "podSelector": {"matchLabels": {names.LABEL_CONTAINER_ID: ref.id}},  # exactly this pod
            # Both types listed: an empty `egress` then means "no egress at all".
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [_peer(settings.gateway_pod_labels, settings.gateway_namespace)],
                "ports": [{"protocol": "TCP", "port": settings.sidecar_port}],
            }],
            "egress": egress,
        },
    }


def _without_empty(value: Any) -> Any:
    """`value` without null or empty-list fields: the API server omits them (`egress: []` comes
    back absent), and for a NetworkPolicy both mean the same. Empty maps stay: `{}` as a selector
    means "all", which differs from no selector."""
    if isinstance(value, dict):
        return {key: _without_empty(item) for key, item in value.items() if item is not None and item != []}
    if isinstance(value, list):
        return [_without_empty(item) for item in value]
    return value


def same_policy_spec(actual: Any, desired: dict[str, Any]) -> bool:
    """Whether a stored NetworkPolicy spec is the one the operator built (drift detection)."""
    return _without_empty(actual or {}) == _without_empty(desired)
