"""Containers that should have a pod and have none: the level-triggered backstop of the pod watcher.

The pod watcher recreates a deleted pod when it sees the DELETED event, but kopf never retries a
watch-event handler: if that recreation fails (a ResourceQuota, an API server hiccup, the egress
proxy's CA not published yet) nothing would try again. Nor does a re-list after a broken watch
report the objects that vanished meanwhile. So the periodic sweep also looks, in memory, for live
Containers whose pod is not in kopf's index of sandbox pods, and reconciles them again.

A pod is only "lost" when it is missing in two sweeps in a row: right after a status write the
pod is about to be created, and right after the operator starts the index may still be filling.
A Container whose reconcile kopf is retrying already (its progress annotation) is left to kopf.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf

from ..resources import names
from ..resources.model import Reason
from .config import PROGRESS_STORAGE
from .kube import Body

# A pod that failed to build for good (kopf.PermanentError): only a spec change brings it back.
RECONCILE_FAILED = Reason.RECONCILE_FAILED  # the name the operator's modules (and tests) use
RECONCILE = "reconcile"  # the id of kopf's reconcile handler


def should_have_pod(body: Mapping[str, Any]) -> bool:
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    return (status.get("status") not in (None, "expired")  # None: kopf's reconcile has not run yet
            and status.get("reason") != RECONCILE_FAILED and not meta.get("deletionTimestamp")
            and PROGRESS_STORAGE.fetch(key=kopf.HandlerId(RECONCILE), body=kopf.Body(body)) is None)


def pod_key(body: Mapping[str, Any]) -> tuple[str, str]:
    """The Container's current pod: the one its status names (a warm one keeps its own name)."""
    meta = body["metadata"]
    return meta["namespace"], (body.get("status") or {}).get("podName") or names.pod_name(meta["name"], meta["uid"])


class LostPods:
    """Picks, sweep after sweep, the Containers whose pod has been missing twice in a row."""

    def __init__(self, has_pod: Callable[[tuple[str, str]], bool]) -> None:
        self._has_pod = has_pod
        self._suspects: set[str] = set()

    def select(self, containers: Iterable[Body]) -> list[Body]:
        missing = {body["metadata"]["uid"]: body for body in containers
                   if should_have_pod(body) and not self._has_pod(pod_key(body))}
        lost = [body for uid, body in missing.items() if uid in self._suspects]
        self._suspects = set(missing)
        return lost
