"""The Container resource ↔ the OpenAI container object.

The spec is the camelCase mirror of the create params (docs/architecture.md); the reply is built
from spec, status and metadata, so containers made with kubectl read the same as ours.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone

from ..api.container import (
    DEFAULT_EXPIRY_MINUTES,
    DEFAULT_MEMORY_LIMIT,
    STATUSES,
    Container,
    ExpiresAfter,
    NetworkPolicy,
)
from ..api.container_create import ContainerCreateParams, NetworkPolicyAllowlist
from ..resources import model, names
from ..resources import owner as owners
from .file_inputs import skills_spec


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp as the API server and our annotation write it."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def container_id(obj: Mapping) -> str:
    return names.container_id(obj["metadata"]["uid"])


def created_at(obj: Mapping) -> int:
    return unix(parse_time(obj["metadata"].get("creationTimestamp"))) or 0


def format_precise_time(moment: datetime) -> str:
    """RFC 3339 to the microsecond (`kontainers.dev/created-at`)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def list_key(obj: Mapping) -> tuple[int, float, str, str]:
    """The total order of container lists: creation second (the wire's `created_at`), then within
    that second the gateway's sub-second creation time (annotation `kontainers.dev/created-at`;
    Containers made with kubectl have none and come first), then the object name, then the id.
    Every part is fixed when the Container is created, so cursors stay valid."""
    precise = parse_time(annotations(obj).get(names.ANNOTATION_CREATED_AT))
    return (created_at(obj), precise.timestamp() if precise else 0.0, obj["metadata"].get("name", ""),
            container_id(obj))


def status_of(obj: Mapping) -> str:
    status = (obj.get("status") or {}).get("status")
    return status if status in STATUSES else "pending"


def annotations(obj: Mapping) -> Mapping[str, str]:
    return obj["metadata"].get("annotations") or {}


def last_active_at(obj: Mapping, seen_here: datetime | None = None) -> int | None:
    """Newest of status.lastActiveAt, the activity annotation, creation, and activity seen here."""
    candidates = [
        parse_time((obj.get("status") or {}).get("lastActiveAt")),
        parse_time(annotations(obj).get(names.ANNOTATION_LAST_ACTIVE)),
        parse_time(obj["metadata"].get("creationTimestamp")),
        seen_here,
    ]
    return unix(max((c for c in candidates if c), default=None))


def to_wire(obj: Mapping, seen_here: datetime | None = None) -> Container:
    spec = obj.get("spec") or {}
    expires = spec.get("expiresAfter") or {}
    policy = spec.get("networkPolicy") or {}
    policy_type = policy.get("type", "disabled")
    return Container(
        id=container_id(obj),
        name=spec.get("name") or obj["metadata"]["name"],
        created_at=created_at(obj),
        status=status_of(obj),
        last_active_at=last_active_at(obj, seen_here),
        expires_after=ExpiresAfter(anchor="last_active_at", minutes=expires.get("minutes", DEFAULT_EXPIRY_MINUTES)),
        memory_limit=spec.get("memoryLimit", DEFAULT_MEMORY_LIMIT),
        network_policy=NetworkPolicy(
            type=policy_type,
            allowed_domains=list(policy.get("allowedDomains") or []) if policy_type == "allowlist" else None,
        ),
    )


def resource_name(display_name: str, suffix: str | None = None) -> str:
    """A readable, DNS-1123 metadata.name: a slug of the display name and a unique suffix."""
    slug = re.sub(r"[^a-z0-9]+", "-", display_name.lower()).strip("-")[:40].rstrip("-") or "container"
    return f"{slug}-{suffix or secrets.token_hex(5)}"


def domain_secret_key(index: int, name: str) -> str:
    """The data key of one domain secret in the container's domain-secrets Secret."""
    return f"{index}-{name}"


def spec_from_params(params: ContainerCreateParams, secret_name: str, skills: list[dict] | None = None) -> dict:
    """The Container spec for a create request; domain secret values are replaced by references.

    `skills` are the `spec.skills` entries the gateway checked and resolved (`check_create_inputs`);
    without them, those of the inline skills."""
    policy = params.network_policy
    network = model.NetworkPolicy()
    if isinstance(policy, NetworkPolicyAllowlist):
        network = model.NetworkPolicy(
            type="allowlist",
            allowed_domains=list(policy.allowed_domains),
            domain_secrets=[
                model.DomainSecret(domain=s.domain, name=s.name, secret_key_ref=model.SecretKeySelector(
                    name=secret_name, key=domain_secret_key(i, s.name)))
                for i, s in enumerate(policy.domain_secrets)
            ] if policy.domain_secrets else None,
        )
    spec = model.ContainerSpec(
        name=params.name,
        memory_limit=params.memory_limit or DEFAULT_MEMORY_LIMIT,
        expires_after=model.ExpiresAfter(
            minutes=params.expires_after.minutes if params.expires_after else DEFAULT_EXPIRY_MINUTES),
        network_policy=network,
        file_ids=list(params.file_ids) if params.file_ids else None,
        # bundles by reference: the zips are in the file store
        skills=[model.Skill.model_validate(s) for s in (skills if skills is not None else skills_spec(params.skills))]
        if params.skills else None,
    )
    return spec.wire()


def domain_secret_data(params: ContainerCreateParams) -> dict[str, str]:
    """Data of the domain-secrets Secret (values, keyed as the spec references them)."""
    policy = params.network_policy
    if not isinstance(policy, NetworkPolicyAllowlist) or not policy.domain_secrets:
        return {}
    return {domain_secret_key(i, s.name): s.value for i, s in enumerate(policy.domain_secrets)}


def new_resource(namespace: str, name: str, spec: dict, annotations: dict[str, str]) -> dict:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": spec,
    }


def owner_reference(obj: Mapping) -> dict:
    """An ownerReference to a Container, so the gateway's domain-secrets Secret goes when it goes
    (not a controller reference: the operator manages the Container's other children; and no
    blocking, which would need `update` on containers/finalizers)."""
    return owners.owner_reference(obj["metadata"]["name"], obj["metadata"]["uid"], block_owner_deletion=False)
