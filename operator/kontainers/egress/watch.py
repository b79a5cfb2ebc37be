"""Feed the registry from Container resources: list, then watch (`kontainers.kube.list_watch`).

The proxy needs only spec.networkPolicy, status.podIP and metadata of each Container; domain-secret
values are read from their Secrets on first use (`secret_loader`) and cached until the Container
changes or goes away.
"""

from __future__ import annotations

import asyncio
import base64
import logging

from kubernetes_asyncio import client

from kontainers import kube
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
        self.containers = kube.Containers(api_client)
        self.registry = registry
        self.namespaces = namespaces or [None]  # None: all namespaces
        self.synced = asyncio.Event()
        self._synced_scopes: set[str | None] = set()

    async def run(self) -> None:
        await asyncio.gather(*(
            kube.list_watch(self.containers.list_call(ns), what=f"Containers in {ns or 'all namespaces'}",
                            on_list=lambda items, ns=ns: self._listed(ns, items), on_event=self._event)
            for ns in self.namespaces))

    def _listed(self, namespace: str | None, items: list[dict]) -> None:
        policies = [p for p in map(from_container, items) if p is not None]
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
        self._synced_scopes.add(namespace)
        if len(self._synced_scopes) == len(self.namespaces):
            self.synced.set()

    def _ids_in(self, namespace: str) -> list[str]:
        return [p.container_id for p in self.registry.policies() if p.namespace == namespace]

    def _event(self, kind: str, obj: dict) -> None:
        cid = names.container_id(obj["metadata"]["uid"])
        policy = from_container(obj)
        if kind == "DELETED" or policy is None or obj["metadata"].get("deletionTimestamp"):
            self.registry.remove(cid)
        else:
            self.registry.put(policy)
