"""Idle expiry: one periodic sweep over the operator's in-memory index of Containers.

Every `expiry_check_interval` seconds the sweep looks at each known Container: a running one
whose last activity + `minutes` has passed is expired (status first, so the pod watcher does not
recreate the pod; then pod, Secret and NetworkPolicy are deleted); an expired one older than
`expired_retention` is deleted. The same sweep hands Containers whose pod went missing to
`repair` (see `lost_pods`), and those whose NetworkPolicy was deleted or edited to `restore`
(see `policy_drift`).

Not a kopf timer per Container: kopf gives every object with a timer a finalizer, and a
finalizer would keep any Container — and any namespace holding one — from being deleted while
the operator is down or uninstalled. The sweep reads only memory; it calls the API server only
for the Containers it changes, and only while this replica is the active one (`leadership`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import kopf

from ..resources.model import ConditionType, EventReason, Reason
from ..resources.owner import ContainerRef
from ..settings import OperatorSettings
from . import status as st
from .children import delete_children
from .events import post_event
from .kube import Body, Kube
from .lost_pods import LostPods
from .writer import update_status

logger = logging.getLogger(__name__)
PARALLEL = 16  # expiries in flight at once


def due_for_expiry(body: Mapping[str, Any], moment: datetime) -> bool:
    status = body.get("status") or {}
    live = status.get("status") not in (None, "expired")  # not before the first reconcile
    return live and not (body.get("metadata") or {}).get("deletionTimestamp") and st.is_due(body, moment)


def due_for_deletion(body: Mapping[str, Any], moment: datetime, retention: float) -> bool:
    status = body.get("status") or {}
    return (status.get("status") == "expired" and not (body.get("metadata") or {}).get("deletionTimestamp")
            and st.retention_over(status, moment, retention))


async def expire(kube: Kube, ref: ContainerRef, moment: datetime, body: Body | None = None) -> bool:
    """Expire one Container if it is (still) due; True if this call expired it."""
    minutes = ref.spec.expires_after.minutes
    idle = f"no activity for {minutes} minute{'' if minutes == 1 else 's'}"
    wrote = False

    def expired(current: Body) -> dict[str, Any] | None:
        nonlocal wrote
        if not due_for_expiry(current, moment):  # activity arrived, or someone else expired it
            return None
        wrote = True
        conditions = (current.get("status") or {}).get("conditions")
        conditions = st.with_condition(conditions, ConditionType.EXPIRED, True, Reason.IDLE_TIMEOUT, idle, moment, ref.generation)
        conditions = st.with_condition(conditions, ConditionType.READY, False, Reason.CONTAINER_EXPIRED, idle, moment, ref.generation)
        return {
            "status": "expired", "reason": Reason.IDLE_TIMEOUT, "message": idle,
            "podIP": None, "podName": None, "expiredAt": st.rfc3339(moment), "conditions": conditions,
        }

    written = await update_status(kube, ref.namespace, ref.name, ref.uid, expired, body=body)
    if written is None or not wrote or (written.get("status") or {}).get("status") != "expired":
        return False
    await delete_children(kube, ref)
    await post_event(kube, written, "Normal", EventReason.EXPIRED, f"{idle}; pod, Secret and NetworkPolicy removed")
    return True


async def delete_expired(kube: Kube, body: Body, retention: float) -> None:
    meta = body["metadata"]
    await post_event(kube, body, "Normal", EventReason.DELETED, f"expired for longer than {retention:g}s; deleting")
    await kube.delete_container(meta["namespace"], meta["name"], meta["uid"])


Repair = Callable[[Body], Awaitable[None]]


async def sweep(kube: Kube, settings: OperatorSettings, containers: Iterable[Body], moment: datetime,
                lost: Iterable[Body] = (), repair: Repair | None = None,
                drifted: Iterable[Body] = (), restore: Repair | None = None) -> None:
    """Expire, delete, (the `lost` ones, with `repair`) reconcile or (the `drifted` ones, with
    `restore`) restore the NetworkPolicy of each Container that needs it."""
    limit = asyncio.Semaphore(PARALLEL)
    lost_uids = {body["metadata"]["uid"] for body in lost}
    drifted_uids = {body["metadata"]["uid"] for body in drifted}

    async def one(body: Body) -> None:
        meta = body.get("metadata") or {}
        async with limit:
            try:
                if due_for_expiry(body, moment):
                    await expire(kube, ContainerRef.from_body(body), moment, body)
                elif due_for_deletion(body, moment, settings.expired_retention):
                    await delete_expired(kube, body, settings.expired_retention)
                elif repair is not None and meta.get("uid") in lost_uids:
                    logger.info("%s/%s has no pod; reconciling it again", meta.get("namespace"), meta.get("name"))
                    await repair(body)
                elif restore is not None and meta.get("uid") in drifted_uids:
                    await restore(body)
            except kopf.TemporaryError as error:  # e.g. waiting for the egress proxy's CA
                logger.info("%s/%s: %s; retrying next round", meta.get("namespace"), meta.get("name"), error)
            except Exception:
                logger.exception("sweep of %s/%s failed; retrying next round", meta.get("namespace"), meta.get("name"))

    await asyncio.gather(*(one(body) for body in containers))


async def run_sweeps(kube: Kube, settings: OperatorSettings, snapshot: Callable[[], list[Body]],
                     active: Callable[[], Awaitable[bool]], lost_pods: LostPods | None = None,
                     repair: Repair | None = None,
                     drifted_policies: Callable[[list[Body]], list[Body]] | None = None,
                     restore: Repair | None = None) -> None:
    """Forever: wait one interval, then sweep if this replica is the active one."""
    while True:
        await asyncio.sleep(settings.expiry_check_interval)
        try:
            if await active():
                containers = snapshot()
                lost = lost_pods.select(containers) if lost_pods is not None else []
                drifted = drifted_policies(containers) if drifted_policies is not None else []
                await sweep(kube, settings, containers, st.now(), lost, repair, drifted, restore)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("expiry sweep failed; retrying next round")
