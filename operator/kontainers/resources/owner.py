"""One Container as its children see it: identity, labels and the ownerReference they carry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import names
from .model import ContainerSpec


@dataclass(frozen=True)
class ContainerRef:
    """What builders need to know about a Container (parsed once from its body)."""

    name: str
    namespace: str
    uid: str
    spec: ContainerSpec
    generation: int = 1

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ContainerRef:
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
            spec=ContainerSpec.model_validate(body.get("spec") or {}),
        )

    @property
    def id(self) -> str:
        return names.container_id(self.uid)

    @property
    def pod_name(self) -> str:
        return names.pod_name(self.name, self.uid)

    @property
    def secret_name(self) -> str:
        return names.sidecar_secret_name(self.name, self.uid)

    @property
    def network_policy_name(self) -> str:
        return names.network_policy_name(self.name, self.uid)

    def labels(self, component: str | None = None) -> dict[str, str]:
        """The labels every child carries; `kontainers.dev/id` alone selects this Container's pod."""
        labels = {
            names.LABEL_MANAGED_BY: names.MANAGED_BY,
            names.LABEL_CONTAINER: names.label_value(self.name),
            names.LABEL_CONTAINER_ID: self.id,
        }
        if component:
            labels[names.LABEL_COMPONENT] = component
        return labels

    def owner_reference(self) -> dict[str, Any]:
        # controller=true: `kubectl get pods` shows who manages it, and the GC deletes it with the
        # Container. blockOwnerDeletion needs `update` on containers/finalizers (RBAC).
        return {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, component: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(component),
            "ownerReferences": [self.owner_reference()],
            **extra,
        }


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether a child object's controller ownerReference points at the Container with `uid`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)
