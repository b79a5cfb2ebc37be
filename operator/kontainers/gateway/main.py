"""`kontainers gateway`: serve the OpenAI-compatible /v1 API."""

from __future__ import annotations

import argparse
import logging

from ..api.errors import run_app
from ..observability import setup_logging
from ..settings import GatewaySettings
from .app import create_app, with_metrics_server

log = logging.getLogger(__name__)


def parse_settings(argv: list[str]) -> GatewaySettings:
    """Flags override KONTAINERS_GATEWAY_* environment variables, which override defaults."""
    parser = argparse.ArgumentParser(prog="kontainers gateway", description=__doc__)
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; the chart uses 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--metrics-port", type=int, help=f"port of /metrics (default {GatewaySettings.model_fields['metrics_port'].default}; 0: none)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default $KUBECONFIG, else in-cluster)")
    parser.add_argument("--keys-namespace", help="namespace of the API keys Secret (default: own namespace)")
    parser.add_argument("--keys-secret", help="name of the API keys Secret (default kontainers-api-keys)")
    parser.add_argument("--watch-namespace", action="append", dest="watch_namespaces", metavar="NAMESPACE",
                        help="watch Containers only in this namespace (repeatable; default all)")
    parser.add_argument("--sidecar-port", type=int, help="port of the files sidecar in each pod (default 8081)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING… (default INFO)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    return GatewaySettings(**overrides)


def main(argv: list[str]) -> int:
    settings = parse_settings(argv)
    setup_logging(settings.log_level, json=settings.log_json)
    log.info("gateway listening on %s:%d (metrics on port %d)", settings.host, settings.port, settings.metrics_port)
    # Not web.run_app: requests aiohttp cannot parse get the OpenAI error body, and their raw
    # header lines (an API key among them) are never logged.
    run_app(with_metrics_server(create_app(settings)), host=settings.host, port=settings.port, shutdown_timeout=5.0)
    log.info("gateway stopped")
    return 0
