"""What the gateway needs from Kubernetes, as one small interface.

`KubeCluster` (kube_cluster.py) implements it against the API server; unit tests use an in-memory
fake. Reads of Containers and keys come from the watch-fed `containers` and `keys` mirrors;
everything here that is a coroutine is one API call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .auth import KeyStore
from .cache import ContainerCache


class AlreadyExists(Exception):
    """The object's name is taken (HTTP 409 from the API server)."""


class ClusterError(Exception):
    """The API server refused or failed a call; `status` is its HTTP status (0: no answer)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class Cluster(Protocol):
    containers: ContainerCache
    keys: KeyStore

    async def start(self) -> None:
        """Begin mirroring Containers and keys (returns at once; see `ready`)."""

    async def stop(self) -> None: ...

    def ready(self) -> bool:
        """Both mirrors have completed their first list."""

    async def create_container(self, obj: Mapping) -> dict:
        """Create a Container; the stored object. AlreadyExists if the name is taken."""

    async def get_container(self, namespace: str, name: str) -> dict | None: ...

    async def delete_container(self, namespace: str, name: str) -> None:
        """Delete (children follow by ownerReference); already gone is fine."""

    async def annotate_container(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None: ...

    async def swap_annotation(self, namespace: str, name: str, key: str, expected: str, value: str) -> bool:
        """Set annotation `key` to `value` only if it is `expected` now (atomically, at the API
        server); False when it is not (or the Container is gone)."""

    async def put_secret(self, namespace: str, name: str, string_data: Mapping[str, str],
                         labels: Mapping[str, str]) -> None:
        """Create the Secret, or replace its data if it exists (a retried create)."""

    async def own_secret(self, namespace: str, name: str, owner: Mapping) -> None:
        """Make the Secret a child of `owner` (an ownerReference), so it is deleted with it."""

    async def delete_secret(self, namespace: str, name: str) -> None: ...

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """One decoded value of a Secret; None if the Secret or key is missing."""
