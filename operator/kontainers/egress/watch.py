"""Feed the registry from Container resources: list, then watch; re-list when the watch expires.

The proxy needs only spec.networkPolicy, status.podIP and metadata of each Container; domain-secret
values are read from their Secrets on first use (`secret_loader`) and cached until the Container
changes or goes away.
"""

from __future__ import annotations

import asyncio
import base64
import logging

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from kontainers.egress.policy import ContainerPolicy, DomainSecret, from_container
from kontainers.egress.registry import Registry
from kontainers.resources import names

logger = logging.getLogger(__name__)


def secret_loader(api_client: client.ApiClient):
    core = client.CoreV1Api(api_client)

    async def load(policy: ContainerPolicy, secret: DomainSecret) -> str:
        assert secret.ref is not None
        obj = await core.read_namespaced_secret(secret.ref.name, policy.namespace)
        data = obj.data or {}
        if secret.ref.key not in data:
            raise KeyError("key not in Secret")
        return base64.b64decode(data[secret.ref.key]).decode("utf-8")

    return load


class ContainerWatch:
    """Keeps `registry` equal to the allowlist Containers of the watched namespaces."""

    def __init__(self, api_client: client.ApiClient, registry: Registry, namespaces: list[str]) -> None:
        self.api = client.CustomObjectsApi(api_client)
        self.registry = registry
        self.namespaces = namespaces or [None]  # None: all namespaces
        self.synced = asyncio.Event()
        self._synced_scopes: set[str | None] = set()

    async def run(self) -> None:
        await asyncio.gather(*(self._run_scope(ns) for ns in self.namespaces))

    async def _run_scope(self, namespace: str | None) -> None:
        while True:
            try:
                version = await self._list(namespace)
                self._synced_scopes.add(namespace)
                if len(self._synced_scopes) == len(self.namespaces):
                    self.synced.set()
                await self._watch(namespace, version)
            except asyncio.CancelledError:
                raise
            except ApiException as error:
                if error.status != 410:
                    logger.warning("Container watch failed; re-listing", extra={"status": error.status})
                    await asyncio.sleep(2)
            except Exception:  # noqa: BLE001 - keep watching whatever the API server did
                logger.exception("Container watch failed; re-listing")
                await asyncio.sleep(2)

    def _list_call(self, namespace: str | None):
        if namespace is None:
            return self.api.list_cluster_custom_object, (names.GROUP, names.VERSION, names.PLURAL)
        return self.api.list_namespaced_custom_object, (names.GROUP, names.VERSION, namespace, names.PLURAL)

    async def _list(self, namespace: str | None) -> str:
        call, args = self._list_call(namespace)
        listing = await call(*args)
        policies = [p for p in map(from_container, listing.get("items", [])) if p is not None]
        if namespace is None:
            self.registry.replace_all(policies)
        else:
            known = [self.registry.by_id(cid) for cid in self._ids_in(namespace)]
            keep = {p.container_id for p in policies}
            for old in known:
                if old is not None and old.container_id not in keep:
                    self.registry.remove(old.container_id)
            for policy in policies:
                self.registry.put(policy)
        logger.info("Containers listed", extra={"namespace": namespace or "*", "allowlist": len(policies)})
        return listing["metadata"]["resourceVersion"]

    def _ids_in(self, namespace: str) -> list[str]:
        return [p.container_id for p in self.registry.policies() if p.namespace == namespace]

    async def _watch(self, namespace: str | None, version: str) -> None:
        call, args = self._list_call(namespace)
        async with watch.Watch() as stream:
            async for event in stream.stream(
                call, *args, resource_version=version, allow_watch_bookmarks=True, timeout_seconds=300
            ):
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code", 500))
                if kind == "BOOKMARK":
                    continue
                cid = names.container_id(obj["metadata"]["uid"])
                policy = from_container(obj)
                if kind == "DELETED" or policy is None or obj["metadata"].get("deletionTimestamp"):
                    self.registry.remove(cid)
                else:
                    self.registry.put(policy)
        # A watch that ends normally (timeout) is simply restarted by listing again.
