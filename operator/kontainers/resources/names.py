"""Names and identifiers shared by everything that touches a Container resource.

The Container resource is the single source of truth; these helpers derive every other name
from it deterministically, so a restarted operator or another gateway replica computes the same.
"""

from __future__ import annotations

import hashlib

GROUP = "kontainers.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Container"
PLURAL = "containers"
SINGULAR = "container"
SHORT_NAME = "cntr"
CRD_NAME = f"{PLURAL}.{GROUP}"

# Labels and annotations owned by kontainers.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kontainers"
LABEL_CONTAINER = f"{GROUP}/container"  # the Container's metadata.name, on every child
LABEL_CONTAINER_ID = f"{GROUP}/id"  # the OpenAI id (cntr_…), on the Container and its children
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_LAST_ACTIVE = f"{GROUP}/last-active-at"  # RFC 3339, written (debounced) by the gateway
ANNOTATION_IDEMPOTENCY = f"{GROUP}/idempotency"  # hash of the API key + Idempotency-Key
ANNOTATION_REQUEST_HASH = f"{GROUP}/request-hash"  # hash of the create body, for lost-reply retries
# A pod readiness gate: True once the files sidecar answers for this very pod. Set by whatever runs
# the sidecar outside the pod (the dev node agent on fake nodes); a real node's readiness probe
# does the same job, so the gate is only added when asked for.
CONDITION_SIDECAR_READY = f"{GROUP}/sidecar-ready"
ANNOTATION_REPLY = f"{GROUP}/reply"  # whether a create's reply reached its caller (gateway/reply_claims.py)
ANNOTATION_FILES_DELIVERED = f"{GROUP}/files-delivered"  # pod IP the gateway delivered fileIds/skills to
ANNOTATION_CREATED_AT = f"{GROUP}/created-at"  # RFC 3339 to the µs, by the gateway: list order within a second
# Warm pool: an unclaimed sandbox pod carries LABEL_POOL (its memory size); a claim removes it in
# the same write that gives the pod its Container's labels and ownerReference.
LABEL_POOL = f"{GROUP}/pool"
ANNOTATION_POOL_TEMPLATE = f"{GROUP}/pool-template-hash"  # which pool template built it (drift)
ANNOTATION_CLAIMED_AT = f"{GROUP}/claimed-at"  # RFC 3339, when a Container claimed this pool pod
POOL_NETWORK_POLICY = "kontainers-warm-pool"  # one per namespace: gateway ingress, no egress

CONTAINER_ID_PREFIX = "cntr_"
MAX_NAME = 63


def container_id(uid: str) -> str:
    """The OpenAI id of a Container: `cntr_` + 48 lowercase hex, derived from its metadata.uid.

    Derived rather than stored so that it exists the moment the API server answers the create,
    stays stable for the resource's life, and is the same for resources made with kubectl.
    """
    return CONTAINER_ID_PREFIX + hashlib.sha256(uid.encode()).hexdigest()[:48]


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def child_name(container_name: str, uid: str, suffix: str = "") -> str:
    """Deterministic, DNS-1123-label-safe (≤63) name of a child object of one Container.

    It includes a hash of the uid, so a Container deleted and recreated under the same name
    never collides with children of the old one that are still being garbage-collected.
    """
    tail = f"-{short_hash(uid)}{('-' + suffix) if suffix else ''}"
    head = container_name[: MAX_NAME - len(tail)].rstrip("-.")
    return f"{head}{tail}"


def pod_name(container_name: str, uid: str) -> str:
    return child_name(container_name, uid)


def sidecar_secret_name(container_name: str, uid: str) -> str:
    return child_name(container_name, uid, "sidecar")


def network_policy_name(container_name: str, uid: str) -> str:
    return child_name(container_name, uid)


def domain_secrets_name(container_name: str) -> str:
    """The Secret holding a Container's domain_secrets values (written by the gateway)."""
    tail = "-domain-secrets"
    return container_name[: MAX_NAME - len(tail)].rstrip("-.") + tail


def label_value(text: str) -> str:
    """`text` as a label value (≤63 characters, alphanumeric at both ends).

    Container names may be DNS subdomains of up to 253 characters; longer ones keep a readable
    head and gain a hash of the whole, so two long names never share a label value.
    """
    if len(text) <= MAX_NAME:
        return text
    tail = f"-{short_hash(text)}"
    return text[: MAX_NAME - len(tail)].rstrip("-._") + tail
