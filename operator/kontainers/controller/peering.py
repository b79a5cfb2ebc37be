"""The kopf peering objects, made by the operator itself so that no install step has to.

kopf keeps the keep-alives of all replicas in the status of one peering object — the
ClusterKopfPeering `peering_name` for a cluster-wide operator, a KopfPeering of that name in each
watched namespace otherwise — but never creates it; without it the replicas do not see each other
and would all reconcile at once. A chart or `kubectl apply -f manifests/` cannot ship the object
either: a custom resource cannot be applied together with its CRD (its kind is unknown until the
CRD is established). So the operator creates it before kopf starts; 409 means it exists.
"""

from __future__ import annotations

import logging

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from ..settings import OperatorSettings

logger = logging.getLogger(__name__)

GROUP, VERSION = "kopf.dev", "v1"


async def ensure_peering_objects(api: client.ApiClient, settings: OperatorSettings) -> None:
    if settings.standalone:
        return
    custom = client.CustomObjectsApi(api)
    for namespace in settings.namespaces or [None]:
        kind = "KopfPeering" if namespace else "ClusterKopfPeering"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": settings.peering_name}}
        where = {"peering": settings.peering_name, "namespace": namespace or "(cluster)"}
        try:
            if namespace:
                await custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "kopfpeerings", body)
            else:
                await custom.create_cluster_custom_object(GROUP, VERSION, "clusterkopfpeerings", body)
            logger.info("created the kopf peering object", extra=where)
        except ApiException as error:
            if error.status == 409:
                continue
            if error.status == 404:  # kopf then decides: standalone, or an error if peering is mandatory
                logger.warning("the kopf peering CRDs are not installed", extra=where)
                return
            if error.status == 403:
                logger.warning("not allowed to create the kopf peering object; it must exist", extra=where)
                continue
            raise
