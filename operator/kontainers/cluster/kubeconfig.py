"""Kubeconfig files for the local control plane, with the certificates embedded.

Embedding (rather than pointing at paths) keeps a kubeconfig usable after it is copied.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from kontainers.cluster.pki import CertPair


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def render(server: str, ca_cert: Path, client: CertPair, *, cluster: str = "kontainers-local", user: str) -> str:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)}}],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write(path: Path, content: str) -> None:
    """Write atomically with owner-only permissions: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(content)
    partial.chmod(0o600)
    os.replace(partial, path)
