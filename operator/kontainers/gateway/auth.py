"""Bearer API keys → tenant namespace.

Keys are stored hashed (sha256 hex) as the data keys of one Secret, each mapping to the tenant's
namespace; the store mirrors that Secret through a watch. Only the hash of a presented key is
ever compared or kept, and no key or hash is logged.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from ..api.errors import APIError, Handler, unauthorized


def key_hash(api_key: str) -> str:
    # aiohttp decodes header bytes that are not UTF-8 into surrogates: such a key is hashed (and
    # matches nothing) instead of failing the request.
    return hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True)
class Tenant:
    """Who is calling: the namespace their key grants, and the hash that identifies the key."""

    namespace: str
    key_hash: str


TENANT = web.RequestKey("tenant", Tenant)


class KeyStore:
    """Hash → namespace, replaced whenever the keys Secret changes."""

    def __init__(self) -> None:
        self._namespaces: dict[str, str] = {}
        self.synced = False

    def replace_from_secret(self, secret: Mapping | None) -> None:
        """Mirror a Secret (raw API dict, base64 `data`); None when it does not exist."""
        data = (secret or {}).get("data") or {}
        self._namespaces = {k: base64.b64decode(v).decode().strip() for k, v in data.items()}
        self.synced = True

    def replace(self, namespaces_by_hash: Mapping[str, str]) -> None:
        self._namespaces = dict(namespaces_by_hash)
        self.synced = True

    def tenant(self, api_key: str) -> Tenant | None:
        digest = key_hash(api_key)
        namespace = self._namespaces.get(digest)
        return Tenant(namespace, digest) if namespace else None

    def __len__(self) -> int:
        return len(self._namespaces)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def auth_middleware(keys: KeyStore, prefix: str = "/v1/"):
    """Require a known key on every request under `prefix`; put the Tenant in `request[TENANT]`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(prefix):
            token = _bearer(request)
            if token is None:
                raise APIError(401, "You didn't provide an API key. Provide it in the Authorization header "
                               "using Bearer auth (Authorization: Bearer YOUR_KEY).", code="missing_api_key")
            tenant = keys.tenant(token)
            if tenant is None:
                raise unauthorized("Incorrect API key provided.")
            request[TENANT] = tenant
        return await handler(request)

    return middleware
