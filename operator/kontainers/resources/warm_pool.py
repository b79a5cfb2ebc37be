"""The warm pool's objects: ready sandbox pods of one memory size, claimed by new Containers.

A pool pod is the pod a `disabled` Container of that size would get (`build_pod`), built for no
Container yet: labels `kontainers.dev/pool: <size>` instead of a Container's, no ownerReference,
and a Secret of its own holding its sidecar token (owned by the pod, so it goes with it). Until it
is claimed, the namespace's pool NetworkPolicy holds it: ingress from the gateway to the sidecar
port only, no egress at all.

A claim is one merge patch with the pod's resourceVersion as precondition (`claim_patch`): the pool
label goes, the Container's labels (which its own NetworkPolicy selects) and controller
ownerReference come, in the same write. Two claims of one pod cannot both succeed, and a pod
without the pool label is never offered again: it serves one Container, then goes with it.
"""

from __future__ import annotations

import secrets as random
from collections.abc import Mapping
from typing import Any

from ..settings import OperatorSettings
from . import names
from .model import ContainerSpec
from .network_policy import build_network_policy
from .owner import ContainerRef, owner_reference
from .pod import ANNOTATION_INPUTS_HASH, ANNOTATION_SPEC_HASH, SIDECAR_CONTAINER, build_pod, pod_spec_hash
from .secret import TOKEN_KEY, build_sidecar_secret, new_token

COMPONENT = "sandbox"  # pool pods are sandboxes: the operator's pod watch and the node agent see them
POOL_NAME_PREFIX = "kontainers-pool"
# Stands in for "some Container" when building pool objects: the template hash is computed from a
# pod built for it, so every pool pod of one size and settings has the same one.
_TEMPLATE_UID = "warm-pool-template"


def _pool_ref(namespace: str, size: str, name: str, uid: str) -> ContainerRef:
    return ContainerRef(name=name, namespace=namespace, uid=uid, spec=ContainerSpec(name=name, memory_limit=size))


def pool_labels(size: str) -> dict[str, str]:
    return {names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_COMPONENT: COMPONENT, names.LABEL_POOL: size}


def template_hash(namespace: str, size: str, settings: OperatorSettings) -> str:
    """Which template the pool pods of `size` are built from now: a pool pod with another one has
    drifted (new images, probes, requests) and is replaced while unclaimed."""
    pod = build_pod(_pool_ref(namespace, size, POOL_NAME_PREFIX, _TEMPLATE_UID), settings)
    return pod_spec_hash(pod["spec"])


def new_pool_pod_name(size: str) -> str:
    # Random, never derived: a pool pod is used once, and its name must not come back.
    return f"{POOL_NAME_PREFIX}-{size}-{random.token_hex(5)}"


def build_pool_objects(namespace: str, size: str, settings: OperatorSettings, name: str | None = None,
                       token: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the pod, its sidecar Secret). The Secret is created after the pod, owned by it
    (`secret_owner_patch`), so it goes with the pod whatever happens in between."""
    name = name or new_pool_pod_name(size)
    ref = _pool_ref(namespace, size, name, name)
    pod = build_pod(ref, settings)
    pod["metadata"] = {
        "name": name,
        "namespace": namespace,
        "labels": pool_labels(size),
        "annotations": {
            ANNOTATION_SPEC_HASH: pod["metadata"]["annotations"][ANNOTATION_SPEC_HASH],
            ANNOTATION_INPUTS_HASH: pod["metadata"]["annotations"][ANNOTATION_INPUTS_HASH],
            names.ANNOTATION_POOL_TEMPLATE: template_hash(namespace, size, settings),
        },
    }
    secret = build_sidecar_secret(ref, token or new_token())
    secret["metadata"] = {"name": ref.secret_name, "namespace": namespace,
                          "labels": {**pool_labels(size), names.LABEL_COMPONENT: "sidecar-token"}}
    return pod, secret


def secret_owner_patch(pod: Mapping[str, Any]) -> dict[str, Any]:
    meta = pod["metadata"]
    return {"metadata": {"ownerReferences": [owner_reference(meta["name"], meta["uid"], api_version="v1", kind="Pod")]}}


def build_pool_network_policy(namespace: str, settings: OperatorSettings) -> dict[str, Any]:
    """The policy of every unclaimed pool pod in `namespace`: a `disabled` Container's rules."""
    policy = build_network_policy(_pool_ref(namespace, "1g", POOL_NAME_PREFIX, _TEMPLATE_UID), settings)
    policy["metadata"] = {"name": names.POOL_NETWORK_POLICY, "namespace": namespace,
                          "labels": {names.LABEL_MANAGED_BY: names.MANAGED_BY,
                                     names.LABEL_COMPONENT: "warm-pool-network-policy"}}
    policy["spec"]["podSelector"] = {"matchExpressions": [{"key": names.LABEL_POOL, "operator": "Exists"}]}
    return policy


def token_secret_name(pod: Mapping[str, Any]) -> str | None:
    """The Secret the pod's sidecar takes its token from (a pool pod's own, or its Container's)."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        if container.get("name") != SIDECAR_CONTAINER:
            continue
        for env in container.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {})
            if ref.get("key") == TOKEN_KEY:
                return ref.get("name")
    return None


def claim_patch(pod: Mapping[str, Any], ref: ContainerRef, claimed_at: str) -> dict[str, Any]:
    """The one write that makes a pool pod `ref`'s: only if nobody changed it since it was seen."""
    labels: dict[str, Any] = {names.LABEL_POOL: None, **ref.labels(COMPONENT)}
    return {"metadata": {
        "resourceVersion": pod["metadata"]["resourceVersion"],
        "labels": labels,
        "annotations": {names.ANNOTATION_CLAIMED_AT: claimed_at},
        "ownerReferences": [ref.owner_reference()],
    }}


def fits(pod: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether a pool pod can serve a Container whose own pod would be `desired`: it asks for
    nothing a pool pod lacks (its size, and no additions such as the egress proxy's wiring)."""
    have = (pod.get("metadata") or {}).get("annotations") or {}
    return have.get(ANNOTATION_INPUTS_HASH) == desired["metadata"]["annotations"][ANNOTATION_INPUTS_HASH]


def is_unclaimed(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    return (names.LABEL_POOL in (meta.get("labels") or {}) and not meta.get("deletionTimestamp")
            and not meta.get("ownerReferences"))


def is_current(pod: Mapping[str, Any], template: str) -> bool:
    """Built from the pool's current template (else it has drifted)."""
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(names.ANNOTATION_POOL_TEMPLATE) == template
