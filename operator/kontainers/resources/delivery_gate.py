"""The operator's side of file delivery: a Container with `fileIds` or `skills` is not `running`
until the gateway has put them into its current pod (docs/architecture.md, "Files API").

The gateway signals a finished delivery with the annotation `kontainers.dev/files-delivered`
set to the pod IP it delivered to; the operator removes it whenever it makes a new pod.
Pure functions over Container dicts: no I/O. The operator and the gateway's delivery loop both
read them, so the two sides of the contract cannot drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kontainers.resources import names
from kontainers.resources.model import Reason

DELIVERING_FILES = Reason.DELIVERING_FILES  # the name the gateway's delivery and its tests read
DELIVERING_MESSAGE = "the sandbox pod is up; copying file_ids and skills into it"


def wants_delivery(container: Mapping[str, Any]) -> bool:
    spec = container.get("spec") or {}
    return bool(spec.get("fileIds") or spec.get("skills"))


def delivered_to(container: Mapping[str, Any]) -> str | None:
    return ((container.get("metadata") or {}).get("annotations") or {}).get(names.ANNOTATION_FILES_DELIVERED)


def awaiting_delivery(container: Mapping[str, Any], pod_ip: str | None) -> bool:
    """The pod at `pod_ip` is ready but has not received the Container's files yet."""
    return wants_delivery(container) and bool(pod_ip) and delivered_to(container) != pod_ip


def delivery_done(container: Mapping[str, Any]) -> bool:
    """The status waits for a delivery that the annotation now says is complete."""
    status = container.get("status") or {}
    return (status.get("status") == "pending" and status.get("reason") == DELIVERING_FILES
            and bool(status.get("podIP")) and delivered_to(container) == status.get("podIP"))


def forget_delivery_patch(container: Mapping[str, Any]) -> dict[str, Any] | None:
    """The metadata patch that drops a delivery marker before a new pod is made (None: none set)."""
    if delivered_to(container) is None:
        return None
    return {"metadata": {"annotations": {names.ANNOTATION_FILES_DELIVERED: None}}}
