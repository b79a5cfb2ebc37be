"""One way to get an asyncio Kubernetes API client, for every process kind."""

from __future__ import annotations

import os

from kubernetes_asyncio import client, config


async def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient from the given kubeconfig, $KUBECONFIG, or the in-cluster service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path:
        cfg = client.Configuration()
        await config.load_kube_config(config_file=path, client_configuration=cfg)
        return client.ApiClient(cfg)
    cfg = client.Configuration()
    config.load_incluster_config(client_configuration=cfg)
    return client.ApiClient(cfg)
