"""Whether this replica is the one kopf lets work, for work kopf does not schedule itself.

kopf pauses its handlers when the peering object shows a live peer of a higher or equal
priority. The expiry sweep runs outside kopf's handlers, so it applies the same rule to the same
peering object(s): ClusterKopfPeering `peering_name` when cluster-wide, KopfPeering of that name
in each watched namespace otherwise. A missing peering object means standalone, as for kopf.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..settings import OperatorSettings
from . import status as st
from ..kube import or_none
from .kube import Kube

PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"


@dataclass(frozen=True)
class Peer:
    identity: str
    priority: int


def outranked(peers: Mapping[str, Any], me: Peer, moment: datetime) -> bool:
    """kopf's rule: another live peer with a priority ≥ mine pauses me."""
    for identity, info in peers.items():
        if identity == me.identity or not isinstance(info, Mapping):
            continue
        seen = st.parse_time(info.get("lastseen"))
        lifetime = timedelta(seconds=int(info.get("lifetime", 60)))
        alive = seen is not None and seen + lifetime > moment
        if alive and int(info.get("priority", 0)) >= me.priority:
            return True
    return False


async def peering_statuses(kube: Kube, settings: OperatorSettings) -> list[Mapping[str, Any]]:
    name = settings.peering_name
    if not settings.namespaces:
        found = await or_none(kube.custom.get_cluster_custom_object(
            PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", name))
        return [found.get("status") or {}] if found else []
    statuses = []
    for namespace in settings.namespaces:
        found = await or_none(kube.custom.get_namespaced_custom_object(
            PEERING_GROUP, PEERING_VERSION, namespace, "kopfpeerings", name))
        if found:
            statuses.append(found.get("status") or {})
    return statuses


async def is_active(kube: Kube, settings: OperatorSettings, me: Peer) -> bool:
    if settings.standalone:
        return True
    moment = datetime.now(UTC)
    return not any(outranked(peers, me, moment) for peers in await peering_statuses(kube, settings))
