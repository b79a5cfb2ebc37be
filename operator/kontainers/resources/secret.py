"""The per-container Secret holding the token the files sidecar demands on every request."""

from __future__ import annotations

import secrets
from typing import Any

from .owner import ContainerRef

TOKEN_KEY = "token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def build_sidecar_secret(ref: ContainerRef, token: str) -> dict[str, Any]:
    """Only the sidecar (via secretKeyRef) and the gateway (RBAC: get secrets) read it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": ref.metadata(ref.secret_name, component="sidecar-token"),
        "type": "Opaque",
        "immutable": True,  # a token never rotates in place; a new Container gets a new one
        "stringData": {TOKEN_KEY: token},
    }
