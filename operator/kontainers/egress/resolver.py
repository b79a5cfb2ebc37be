"""Name resolution done once, by the proxy, and refused for internal addresses.

DNS rebinding defence: the proxy resolves a name itself, refuses it when ANY answer is not a
globally routable address (private, loopback, link-local, CGNAT, multicast, reserved, unspecified —
including IPv4-mapped IPv6 forms), and then connects to exactly the address it checked (the pinned
result), so a second lookup can never hand the connection a different, internal address.

`host_map` (name → address) and `allow_loopback` exist for tests on one machine only: they let
local test servers on 127.0.0.1 stand in for public names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time

from kontainers.egress.policy import Refused

_PIN_SECONDS = 30.0


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is not None:
            return _public(inner)
        if address.teredo is not None:
            return False
    return address.is_global and not address.is_multicast


class Resolver:
    def __init__(self, host_map: dict[str, str] | None = None, allow_loopback: bool = False) -> None:
        self._host_map = {k.lower().rstrip("."): v for k, v in (host_map or {}).items()}
        self._allow_loopback = allow_loopback
        self._pinned: dict[str, tuple[float, tuple[str, ...]]] = {}

    def acceptable(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        if self._allow_loopback and address.is_loopback:
            return True
        return _public(address)

    async def resolve(self, host: str, port: int) -> tuple[str, ...]:
        """Checked addresses for a normalised host name (pinned for a short while); raises Refused."""
        now = time.monotonic()
        cached = self._pinned.get(host)
        if cached and cached[0] > now:
            return cached[1]
        if host in self._host_map:
            found = (self._host_map[host],)
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
                )
            except socket.gaierror as error:
                raise Refused(f"{host} does not resolve ({error.strerror})", kind="dns") from None
            found = tuple(dict.fromkeys(info[4][0] for info in infos))
        if not found:
            raise Refused(f"{host} does not resolve", kind="dns")
        bad = [ip for ip in found if not self.acceptable(ip)]
        if bad:
            raise Refused(
                f"{host} resolves to a non-public address ({bad[0]}); refused to prevent access to "
                "internal networks",
                kind="private_address",
            )
        if len(self._pinned) > 4096:  # wildcards allow unbounded names: keep the cache bounded
            self._pinned = {h: v for h, v in self._pinned.items() if v[0] > now}
        self._pinned[host] = (now + _PIN_SECONDS, found)
        return found
