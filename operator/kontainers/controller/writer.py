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
    body: Mapping[str, Any] | None = None,
) -> Body | None:
    """Apply `compute(fresh Container)` (wanted status fields; None/{} = nothing to do).

    `body`, when the caller has a recent copy, saves the first read: the write then fails with a
    409 only if the copy was stale, and the next attempt reads afresh.
    Returns the Container as written (or as read when nothing changed); None if it is gone or
    was replaced by a namesake with another uid.
    """
    known = dict(body) if body is not None else None
    for _ in range(ATTEMPTS):
        copy, known = known, None
        body = copy if copy is not None else await kube.get_container(namespace, name)
        if body is None or body["metadata"]["uid"] != uid or body["metadata"].get("deletionTimestamp"):
            if copy is not None:
                continue  # the copy may be stale: decide on a fresh read
            return None
        wanted = compute(body)
        patch = changes(body.get("status"), wanted or {})
        if not patch:
            if copy is not None:
                continue  # "nothing to do" must hold for the current state, not for a copy
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
