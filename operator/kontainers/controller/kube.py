"""The few Kubernetes calls the operator makes, as plain dicts (camelCase, like the API).

Child objects and the Container's status go through kubernetes_asyncio (by way of
`kontainers.kube`, the one door to the API server); kopf itself only watches and keeps its
progress annotations.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import kube
from ..kube import JSON_PATCH, MERGE_PATCH, is_conflict, or_none

__all__ = ["Body", "Kube", "is_conflict", "is_namespace_terminating"]

Body = dict[str, Any]


class Kube:
    """One ApiClient and the typed APIs over it; every method answers dicts."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.networking = client.NetworkingV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.containers = kube.Containers(api)

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> Kube:
        return cls(await kube.api_client(kubeconfig))

    async def close(self) -> None:
        await self.api.close()

    def _dict(self, obj: Any) -> Body:
        return self.api.sanitize_for_serialization(obj)

    # --- the Container ---------------------------------------------------------------------

    async def get_container(self, namespace: str, name: str) -> Body | None:
        return await self.containers.get(namespace, name)

    async def patch_container_status(self, namespace: str, name: str, patch: Body) -> Body:
        return await self.containers.patch_status(namespace, name, patch)

    async def patch_container(self, namespace: str, name: str, patch: Body) -> Body:
        """A merge patch of the Container itself (metadata), not of its status."""
        return await self.containers.patch(namespace, name, patch)

    async def delete_container(self, namespace: str, name: str, uid: str) -> None:
        await self.containers.delete(namespace, name, uid=uid)

    # --- children ------------------------------------------------------------------------------

    async def create(self, obj: Body) -> Body | None:
        """Create `obj`; None if an object of that name already exists (409)."""
        ns = obj["metadata"]["namespace"]
        create: Callable[..., Awaitable[Any]] = {
            "Pod": self.core.create_namespaced_pod,
            "Secret": self.core.create_namespaced_secret,
            "NetworkPolicy": self.networking.create_namespaced_network_policy,
        }[obj["kind"]]
        try:
            return self._dict(await create(ns, obj))
        except ApiException as error:
            if error.status == 409:
                return None
            raise

    async def get(self, kind: str, namespace: str, name: str) -> Body | None:
        read = {
            "Pod": self.core.read_namespaced_pod,
            "Secret": self.core.read_namespaced_secret,
            "NetworkPolicy": self.networking.read_namespaced_network_policy,
        }[kind]
        found = await or_none(read(name, namespace))
        return self._dict(found) if found is not None else None

    async def patch_network_policy(self, namespace: str, name: str, patch: Body) -> None:
        await self.networking.patch_namespaced_network_policy(name, namespace, patch, _content_type=MERGE_PATCH)

    async def replace_network_policy_spec(self, namespace: str, name: str, spec: Body) -> None:
        """The whole spec replaced (a JSON patch): a merge patch would keep keys someone added."""
        await self.networking.patch_namespaced_network_policy(
            name, namespace, [{"op": "replace", "path": "/spec", "value": spec}], _content_type=JSON_PATCH)

    async def patch_pod_if_unchanged(self, namespace: str, name: str, patch: Body) -> Body | None:
        """A merge patch carrying `metadata.resourceVersion`: None if the pod changed since (409) or
        is gone (404), so that of two writers only one wins."""
        try:
            return self._dict(await self.core.patch_namespaced_pod(name, namespace, patch, _content_type=MERGE_PATCH))
        except ApiException as error:
            if error.status in (404, 409):
                return None
            raise

    async def list_pods(self, namespace: str, label_selector: str) -> list[Body]:
        found = await self.core.list_namespaced_pod(namespace, label_selector=label_selector)
        return [self._dict(pod) for pod in found.items]

    async def delete(self, kind: str, namespace: str, name: str, uid: str | None = None,
                     resource_version: str | None = None) -> None:
        """Delete if present; with `uid`, only that very object (not a successor of the same name);
        with `resource_version`, only if nobody changed it since."""
        delete = {
            "Pod": self.core.delete_namespaced_pod,
            "Secret": self.core.delete_namespaced_secret,
            "NetworkPolicy": self.networking.delete_namespaced_network_policy,
        }[kind]
        preconditions = (client.V1Preconditions(uid=uid, resource_version=resource_version)
                         if uid or resource_version else None)
        options = client.V1DeleteOptions(preconditions=preconditions)
        try:
            await delete(name, namespace, body=options)
        except ApiException as error:
            if error.status not in (404, 409):  # 409: the uid precondition failed, a successor exists
                raise


def is_namespace_terminating(error: BaseException) -> bool:
    """The API server refuses new objects in a namespace being deleted (its Containers go too)."""
    return (isinstance(error, ApiException) and error.status == 403
            and "being terminated" in str(error.body or ""))
