"""Which create attempt answers with a container: one delivered reply per container, never two.

The SDKs retry a POST whose reply they did not get. A retry without an `Idempotency-Key` is
matched to its original by the hash of (API key, body) — but another caller may send the same
body, and may retry too. So a container goes to a retry only when the reply that named it did not
reach its caller. The Container's `kontainers.dev/reply` annotation says where that stands:

- `pending/<nonce>`: the attempt holding `<nonce>` is answering (written with the Container
  itself, so it costs no extra request);
- `delivered`: that reply was written to an open connection; no retry gets this container;
- `lost`: the connection closed before the reply was written; the next retry claims it.

Every change after the create is a JSON patch whose `test` op names the value it replaces, at the
API server: two retries never both claim one container, on one gateway replica or several.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..resources import names

KEY = names.ANNOTATION_REPLY
DELIVERED = "delivered"
LOST = "lost"
_PENDING = "pending/"

Connected = Callable[[], bool]  # whether an attempt's caller is still waiting on its connection


def pending(nonce: str) -> str:
    return _PENDING + nonce


def new_nonce() -> str:
    return secrets.token_hex(8)


def pending_nonce(value: str | None) -> str | None:
    """The nonce of a `pending/…` value, else None."""
    return value[len(_PENDING):] if value and value.startswith(_PENDING) else None


@dataclass(frozen=True)
class ReplyClaim:
    """The right of one attempt to answer with one container (`pending/<nonce>` on it)."""

    namespace: str
    name: str
    nonce: str

    @property
    def value(self) -> str:
        return pending(self.nonce)


def connection_open(request: web.Request) -> Connected:
    """Whether the caller is still there: aiohttp drops the transport when the peer closes."""
    def connected() -> bool:
        transport = request.transport
        return transport is not None and not transport.is_closing()

    return connected


async def send(request: web.Request, response: web.StreamResponse) -> bool:
    """Write `response` now; whether it went to an open connection (not whether it was read)."""
    if not connection_open(request)():
        return False
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:  # aiohttp's "Cannot write to closing transport" is one
        return False
    return connection_open(request)()
