"""`kontainers egress`: the forward proxy that allowlist sandboxes must use to reach the internet.

Built on mitmproxy 11 (in-process, through its Master/options API, with only the addons it needs)
rather than a hand-written proxy: enforcing an allowlist on the TLS SNI and on the Host header, and
swapping placeholders inside HTTPS requests, needs a complete HTTP/1, HTTP/2 and TLS-interception
stack with upstream certificate verification — exactly what mitmproxy maintains and fuzzes.
mitmproxy 11.x is the last line that runs on Python 3.11 (12.x needs 3.12); proxy.py was the other
candidate, but its TLS interception is a plugin layer without HTTP/2 or hooks at the server-connect
step, which the DNS-rebinding defence needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from mitmproxy import options
from mitmproxy.addons import core, disable_h2c, next_layer, proxyserver, tlsconfig
from mitmproxy.master import Master

from kontainers import kube
from kontainers.egress import ca
from kontainers.egress.addon import EgressGuard
from kontainers.egress.registry import Registry, load_policy_file
from kontainers.egress.resolver import Resolver
from kontainers.observability import setup_logging, start_ops_server
from kontainers.settings import EgressSettings

logger = logging.getLogger("kontainers.egress")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kontainers egress", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; the chart sets 0.0.0.0)")
    parser.add_argument("--port", type=int, help="proxy port (default 3128)")
    parser.add_argument("--ops-port", type=int, help="port of /healthz, /readyz, /metrics (default 8083)")
    parser.add_argument("--kubeconfig", help="kubeconfig (default $KUBECONFIG, else in-cluster)")
    parser.add_argument("--namespace", help="namespace of the CA Secret (default: own namespace)")
    parser.add_argument("--advertise-url", help="proxy URL published for sandboxes (the chart: its Service)")
    parser.add_argument("--watch-namespace", action="append", dest="watch_namespaces",
                        help="watch Containers of this namespace only (repeatable; default all)")
    parser.add_argument("--confdir", type=Path, help="mitmproxy confdir (default /tmp/kontainers-egress)")
    parser.add_argument("--policy-file", type=Path, help="static policies instead of Kubernetes (tests)")
    parser.add_argument("--host-map", type=json.loads, help='JSON {"name": "ip"} resolution map (tests)')
    parser.add_argument("--allow-loopback-upstream", action="store_true", default=None,
                        help="allow upstream servers on loopback (tests)")
    parser.add_argument("--upstream-ca-file", type=Path, help="extra CA for upstream servers (tests)")
    parser.add_argument("--log-level", help="INFO, DEBUG, …")
    return parser.parse_args(argv)


def load_settings(argv: list[str]) -> EgressSettings:
    overrides = {k: v for k, v in vars(parse_args(argv)).items() if v is not None}
    return EgressSettings(**overrides)


def own_namespace(settings: EgressSettings) -> str:
    return kube.own_namespace(settings.namespace)


def advertised_url(settings: EgressSettings) -> str | None:
    """Where sandboxes reach this proxy: the setting, else the listen address if it is one."""
    if settings.advertise_url:
        return settings.advertise_url
    if settings.host in {"0.0.0.0", "::", ""}:
        return None  # the operator falls back to the Service name
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def build_master(settings: EgressSettings, guard: EgressGuard) -> Master:
    opts = options.Options()
    master = Master(opts)
    # Only what a forward proxy with TLS interception needs — no flow dumper (it would print
    # headers, i.e. secrets), no scripting, no replay, no web UI.
    master.addons.add(
        core.Core(), proxyserver.Proxyserver(), next_layer.NextLayer(), tlsconfig.TlsConfig(),
        disable_h2c.DisableH2C(), guard,
    )
    opts.update(
        mode=["regular"],
        listen_host=settings.host,
        listen_port=settings.port,
        confdir=str(settings.confdir),
        # Decide before any upstream connection exists: nothing leaves until the checks passed.
        connection_strategy="lazy",
        ssl_verify_upstream_trusted_ca=str(settings.upstream_ca_file) if settings.upstream_ca_file else None,
    )
    return master


async def run(settings: EgressSettings) -> int:
    resolver = Resolver(settings.host_map, allow_loopback=settings.allow_loopback_upstream)
    ready = asyncio.Event()
    tasks: list[asyncio.Task] = []
    api_client = None
    if settings.policy_file is not None:
        registry = Registry()
        count = load_policy_file(settings.policy_file, registry)
        logger.info("static policies loaded (no Kubernetes)", extra={"containers": count})
        cert_pem, key_pem = ca.local_ca(settings.confdir)
        ready.set()
    else:
        from kontainers.egress.watch import ContainerWatch, secret_loader
        from kontainers.kube import api_client as make_api_client

        api_client = await make_api_client(settings.kubeconfig)
        registry = Registry(loader=secret_loader(api_client))
        cert_pem, key_pem = await ca.ensure_in_cluster(
            api_client, own_namespace(settings), settings.ca_secret, advertised_url(settings)
        )
        container_watch = ContainerWatch(api_client, registry, settings.watch_namespaces)
        tasks.append(asyncio.create_task(container_watch.run(), name="container watch"))

        async def mark_ready() -> None:
            await container_watch.synced.wait()
            ready.set()

        tasks.append(asyncio.create_task(mark_ready()))
    ca.write_confdir(settings.confdir, cert_pem, key_pem)

    guard = EgressGuard(
        registry, resolver, frozenset(settings.allowed_ports), max_scrub_bytes=settings.max_scrub_bytes
    )
    master = build_master(settings, guard)
    ops = await start_ops_server(settings.host, settings.ops_port, ready=ready.is_set)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, master.shutdown)
    logger.info(
        "egress proxy listening",
        extra={"host": settings.host, "port": settings.port, "ops_port": settings.ops_port,
               "allowed_ports": settings.allowed_ports, "pid": os.getpid()},
    )
    try:
        await master.run()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ops.cleanup()
        if api_client is not None:
            await api_client.close()
    return 0


def main(argv: list[str]) -> int:
    settings = load_settings(argv)
    setup_logging(settings.log_level)
    # The HTTP/2 header codecs log every header they encode at DEBUG — substituted secrets too.
    for codec in ("hpack", "h2", "h11"):
        logging.getLogger(codec).setLevel(logging.WARNING)
    return asyncio.run(run(settings))
