"""`kontainers operator`: run the Container operator (kopf) until SIGTERM/SIGINT.

Settings come from KONTAINERS_OPERATOR_* environment variables; the flags below override them.
Maps (memory/CPU requests per size, pod selectors) are set through the environment as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket

import kopf

from .. import kube
from ..observability import setup_logging, start_ops_server
from ..settings import OperatorSettings
from .config import kopf_settings
from .handlers import register
from .leadership import Peer
from .peering import ensure_peering_objects

logger = logging.getLogger(__name__)


def parse_settings(argv: list[str]) -> OperatorSettings:
    parser = argparse.ArgumentParser(prog="kontainers operator", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else in-cluster)")
    add("-n", "--namespace", dest="namespaces", action="append",
        help="watch this namespace (repeatable; default: all namespaces)")
    add("--sandbox-image", help="image of the sandbox runtime container")
    add("--sidecar-image", help="image of the files sidecar (the kontainers image)")
    add("--runtime-class-name", help="RuntimeClass of sandbox pods (e.g. gvisor)")
    add("--sidecar-port", type=int, help="port of the files sidecar")
    add("--gateway-namespace", help="namespace of the gateway pods allowed to reach sidecars")
    add("--egress-namespace", help="namespace of the egress proxy pods")
    add("--egress-mode", choices=["proxy", "cilium"], help="enforce allowlists with the egress proxy or Cilium toFQDNs")
    add("--expiry-check-interval", type=float, help="seconds between idle-expiry checks of a Container")
    add("--expired-retention", type=float, help="seconds an expired Container is kept before deletion")
    add("--standalone", action="store_true", default=None, help="run without peering")
    add("--peering-name", help="name of the kopf peering object")
    add("--peering-mandatory", action="store_true", default=None, help="fail without the peering object")
    add("--peering-priority", type=int, help="peering priority (default: random, i.e. active/standby)")
    add("--peering-lifetime", type=int, help="seconds without keep-alive before a standby takes over")
    add("--ops-host", help="address of /healthz, /readyz, /metrics")
    add("--ops-port", type=int, help="port of /healthz, /readyz, /metrics (0: none)")
    add("--log-level", help="DEBUG, INFO, WARNING, …")
    args = parser.parse_args(argv)
    given = {key: value for key, value in vars(args).items() if value is not None}
    return OperatorSettings(**given)


def resolve_namespaces(settings: OperatorSettings) -> OperatorSettings:
    """Unset peer namespaces mean "the operator's own" in a cluster (any, outside one)."""
    own = kube.own_namespace(default=None)
    return settings.model_copy(update={
        "gateway_namespace": settings.gateway_namespace or own,
        "egress_namespace": settings.egress_namespace or own,
    })


def identity() -> str:
    """This replica in kopf's peering: the pod name (POD_ID, kopf's convention) or host/pid."""
    return os.environ.get("POD_ID") or f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(3)}"


async def run(settings: OperatorSettings) -> None:
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's own login reads it too
    operator_settings = kopf_settings(settings)
    me = Peer(identity(), operator_settings.peering.priority)
    registry = kopf.OperatorRegistry()
    register(registry, settings, me)
    api = await kube.api_client(settings.kubeconfig)
    try:
        await ensure_peering_objects(api, settings)
    finally:
        await api.close()
    ready = asyncio.Event()
    ops = None
    if settings.ops_port:
        ops = await start_ops_server(settings.ops_host, settings.ops_port, ready=ready.is_set)
    try:
        await kopf.operator(
            registry=registry,
            settings=operator_settings,
            identity=me.identity,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=settings.standalone or None,
            memo=kopf.Memo(),
            ready_flag=ready,
        )
    finally:
        if ops is not None:
            await ops.cleanup()


def main(argv: list[str]) -> int:
    settings = resolve_namespaces(parse_settings(argv))
    setup_logging(settings.log_level, json=settings.log_json)
    if logging.getLogger().level > logging.DEBUG:
        # kopf logs every successful handler run per object; our own lines say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logger.info("watching %s", ", ".join(settings.namespaces) or "all namespaces")
    asyncio.run(run(settings))
    return 0
