"""One Container as its children see it: identity, labels and the ownerReference they carry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
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
    # status.podName: the pod serving now. A pod made for this Container has the derived name
    # (`cold_pod_name`); one claimed from the warm pool keeps its own.
    current_pod: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ContainerRef:
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 1),
            spec=ContainerSpec.model_validate(body.get("spec") or {}),
            current_pod=(body.get("status") or {}).get("podName") or None,
        )

    def with_pod(self, pod_name: str) -> ContainerRef:
        return replace(self, current_pod=pod_name)

    def cold(self) -> ContainerRef:
        """This Container with a pod of its own to make (the current one is gone)."""
        return replace(self, current_pod=None)

    @property
    def id(self) -> str:
        return names.container_id(self.uid)

    @property
    def pod_name(self) -> str:
        return self.current_pod or self.cold_pod_name

    @property
    def cold_pod_name(self) -> str:
        return names.pod_name(self.name, self.uid)

    @property
    def warm(self) -> bool:
        """Whether the current pod came from the warm pool."""
        return self.current_pod is not None and self.current_pod != self.cold_pod_name

    @property
    def pod_selector(self) -> str:
        """A label selector of every pod this Container ever had, whatever its name."""
        return f"{names.LABEL_CONTAINER_ID}={self.id}"

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
        """The reference the operator's children carry: controller=true, so `kubectl get pods` shows
        who manages them and the GC deletes them with the Container; blockOwnerDeletion needs
        `update` on containers/finalizers (RBAC), which the operator has."""
        return owner_reference(self.name, self.uid, controller=True, block_owner_deletion=True)

    def metadata(self, name: str, component: str | None = None, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(component),
            "ownerReferences": [self.owner_reference()],
            **extra,
        }


def owner_reference(name: str, uid: str, *, api_version: str = names.API_VERSION, kind: str = names.KIND,
                    controller: bool | None = None, block_owner_deletion: bool | None = None) -> dict[str, Any]:
    """The one builder of an ownerReference (to a Container unless `kind` says otherwise); the
    optional flags are left out when None, as the API server stores them."""
    ref: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}
    if controller is not None:
        ref["controller"] = controller
    if block_owner_deletion is not None:
        ref["blockOwnerDeletion"] = block_owner_deletion
    return ref


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether a child object's controller ownerReference points at the Container with `uid`."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == uid and ref.get("controller") for ref in refs)
