"""Status writes with optimistic concurrency.

Several handlers write the same status (the Container's own handlers, the pod watcher, the
expiry timer) and `conditions` is a list that a merge patch replaces whole. Each write therefore
reads the Container, computes the wanted fields from what it read, and patches with that
resourceVersion; a 409 means someone wrote in between, so it reads and computes again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kopf

from ..observability import CONTAINERS
from .kube import Body, Kube, is_conflict
from .status import changes

ATTEMPTS = 8


def metric_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


async def update_status(
    kube: Kube,
    namespace: str,
    name: str,
    uid: str,
    compute: Callable[[Body], Mapping[str, Any] | None],
) -> Body | None:
    """Apply `compute(fresh Container)` (wanted status fields; None/{} = nothing to do).

    Returns the Container as written (or as read when nothing changed); None if it is gone or
    was replaced by a namesake with another uid.
    """
    for _ in range(ATTEMPTS):
        body = await kube.get_container(namespace, name)
        if body is None or body["metadata"]["uid"] != uid or body["metadata"].get("deletionTimestamp"):
            return None
        wanted = compute(body)
        patch = changes(body.get("status"), wanted or {})
        if not patch:
            return body
        try:
            written = await kube.patch_container_status(namespace, name, {
                "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                "status": patch,
            })
        except Exception as error:
            if is_conflict(error):
                continue
            raise
        CONTAINERS.observe(metric_key(namespace, name), (written.get("status") or {}).get("status"))
        return written
    raise kopf.TemporaryError(f"the status of {namespace}/{name} kept changing under us", delay=1)
