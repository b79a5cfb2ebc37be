"""Kubernetes Events on a Container from outside kopf's handlers (the expiry sweep).

Inside handlers the operator uses kopf.event; kopf's poster is bound to handler contexts, so
the periodic sweep posts its few events itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from . import status as st
from .kube import Kube

logger = logging.getLogger(__name__)
COMPONENT = "kontainers-operator"


def build_event(container: Mapping[str, Any], kind: str, reason: str, message: str) -> dict[str, Any]:
    meta = container["metadata"]
    moment = st.rfc3339(st.now())
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": container.get("apiVersion"), "kind": container.get("kind"),
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
        },
        "type": kind,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": moment,
        "lastTimestamp": moment,
        "count": 1,
    }


async def post_event(kube: Kube, container: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    """Best effort, like kopf's: an Event that cannot be posted is logged, never fatal."""
    meta = container["metadata"]
    logger.info("%s/%s: %s: %s", meta["namespace"], meta["name"], reason, message)
    try:
        await kube.core.create_namespaced_event(meta["namespace"], build_event(container, kind, reason, message))
    except Exception as error:  # noqa: BLE001
        logger.warning("could not post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], error)
