"""The gateway's Cluster, against a real API server (kubernetes_asyncio)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Mapping
from functools import partial

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from .. import kube
from ..settings import GatewaySettings
from .auth import KeyStore
from .cache import ContainerCache
from .cluster import AlreadyExists, ClusterError

log = logging.getLogger(__name__)


def keys_namespace(settings: GatewaySettings) -> str:
    """Where the API keys Secret lives: the setting, else the gateway's own namespace."""
    return kube.own_namespace(settings.keys_namespace)


def _error(exc: ApiException) -> ClusterError:
    """The API server's own message (e.g. which validation rule failed), else its reason phrase."""
    try:
        message = json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        message = str(exc.reason)
    return ClusterError(exc.status or 0, message)


class KubeCluster:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.containers = ContainerCache()
        self.keys = KeyStore()
        self._api: client.ApiClient | None = None
        self._tasks: list[asyncio.Task] = []

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._api = await kube.api_client(self.settings.kubeconfig)
        containers = kube.Containers(self._api)
        core = client.CoreV1Api(self._api)
        scopes = self.settings.watch_namespaces or [None]
        pending = set(range(len(scopes)))

        def listed(scope_index: int, namespace: str | None, items: list[dict]) -> None:
            self.containers.replace(items, namespace)
            pending.discard(scope_index)
            if not pending:
                self.containers.mark_synced()

        for index, namespace in enumerate(scopes):
            call = containers.list_call(namespace)
            self._spawn(kube.list_watch(call, what=f"containers in {namespace or 'all namespaces'}",
                                   on_list=partial(listed, index, namespace), on_event=self.containers.apply))

        keys_call = partial(core.list_namespaced_secret, keys_namespace(self.settings),
                            field_selector=f"metadata.name={self.settings.keys_secret}")
        self._spawn(kube.list_watch(
            keys_call, what="API keys",
            on_list=lambda items: self.keys.replace_from_secret(items[0] if items else None),
            on_event=lambda kind, obj: self.keys.replace_from_secret(None if kind == "DELETED" else obj),
        ))

    def _spawn(self, coro) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._api is not None:
            await self._api.close()
            self._api = None

    def ready(self) -> bool:
        return self.containers.synced and self.keys.synced

    def api_client(self) -> client.ApiClient:
        """The started client (pods/exec opens its websockets with its credentials and TLS)."""
        if self._api is None:
            raise RuntimeError("the cluster client is not started")
        return self._api

    @property
    def _containers(self) -> kube.Containers:
        return kube.Containers(self._api)

    @property
    def _core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self._api)

    # --- Containers --------------------------------------------------------------------------

    async def create_container(self, obj: Mapping) -> dict:
        try:
            return await self._containers.create(dict(obj))
        except ApiException as exc:
            if exc.status == 409:
                raise AlreadyExists(obj["metadata"]["name"]) from None
            raise _error(exc) from None

    async def get_container(self, namespace: str, name: str) -> dict | None:
        try:
            return await self._containers.get(namespace, name)
        except ApiException as exc:
            raise _error(exc) from None

    async def delete_container(self, namespace: str, name: str) -> None:
        try:
            await self._containers.delete(namespace, name, propagation_policy="Background")
        except ApiException as exc:
            raise _error(exc) from None

    async def annotate_container(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        try:
            await self._containers.patch(namespace, name, {"metadata": {"annotations": dict(annotations)}})
        except ApiException as exc:
            raise _error(exc) from None

    async def swap_annotation(self, namespace: str, name: str, key: str, expected: str, value: str) -> bool:
        path = "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")
        try:
            await self._containers.json_patch(namespace, name, [{"op": "test", "path": path, "value": expected},
                                                                {"op": "replace", "path": path, "value": value}])
        except ApiException as exc:
            # A failed `test` is 422 (409 on some API server versions); 404: the Container is gone.
            if exc.status in (404, 409, 422):
                return False
            raise _error(exc) from None
        return True

    # --- Secrets -----------------------------------------------------------------------------

    async def put_secret(self, namespace: str, name: str, string_data: Mapping[str, str],
                         labels: Mapping[str, str]) -> None:
        body = client.V1Secret(metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=dict(labels)),
                               type="Opaque", string_data=dict(string_data))
        try:
            await self._core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise _error(exc) from None
            try:
                await self._core.replace_namespaced_secret(name, namespace, body)
            except ApiException as exc2:
                raise _error(exc2) from None

    async def own_secret(self, namespace: str, name: str, owner: Mapping) -> None:
        try:
            await self._core.patch_namespaced_secret(
                name, namespace, {"metadata": {"ownerReferences": [dict(owner)]}}, _content_type=kube.MERGE_PATCH)
        except ApiException as exc:
            raise _error(exc) from None

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self._core.delete_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise _error(exc) from None

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        try:
            secret = await self._core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _error(exc) from None
        encoded = (secret.data or {}).get(key)
        return base64.b64decode(encoded).decode() if encoded is not None else None
