"""The mitmproxy addon that enforces a Container's allowlist and swaps domain-secret placeholders.

Order of checks for HTTPS (the sandbox sends CONNECT host:port, then TLS, then HTTP inside):
1. CONNECT: identify the Container (pod IP, cross-checked with Proxy-Authorization if sent) and
   check host (no IP literal, allowed port, in allowedDomains). Refused → 403 and no tunnel.
2. Every request in the tunnel: the TLS SNI and the Host header (`:authority` for HTTP/2) must name
   the CONNECT host, so a tunnel opened for an allowed name cannot carry traffic for another one.
   The name is then resolved by the proxy and refused if any answer is internal (resolver.py).
   Only then does the proxy open the upstream connection (connection_strategy=lazy), to the very
   address it checked, verifying the upstream certificate against the name.
3. Domain secrets: on HTTPS requests whose host matches a secret's domain, placeholders in header
   values are replaced by the real values; replies to such requests get the values turned back
   into placeholders (headers, and bodies up to a size limit), so a reflecting API does not hand
   the value to the sandbox verbatim. Plain-HTTP requests never get a value (it would cross the
   network in clear text).
Plain `http://` requests in proxy form go through the same identity, host and Host-header checks.
Anything that is not HTTP (raw TCP in a tunnel) is cut.

Refusals answer 403 (407 for wrong proxy credentials) with a text body that says why, and log one
line: container id, client address, destination, reason — never header values.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass

from mitmproxy import connection, http, tcp
from mitmproxy.net.http import url
from mitmproxy.proxy import server_hooks
from prometheus_client import Counter

from kontainers.api import domains
from kontainers.egress import placeholders
from kontainers.egress.policy import ContainerPolicy, Refused, check_destination, same_host
from kontainers.egress.registry import CredentialsRequired, Registry
from kontainers.egress.resolver import Resolver

logger = logging.getLogger("kontainers.egress")

REQUESTS = Counter(
    "kontainers_egress_requests_total", "Egress requests and tunnels by decision", ["decision", "reason"]
)
SUBSTITUTIONS = Counter(
    "kontainers_egress_secret_substitutions_total", "Requests in which domain secrets were substituted"
)

_SCRUB = "kontainers.scrub"  # flow.metadata key: value → placeholder for the reply


@dataclass(frozen=True)
class Tunnel:
    policy: ContainerPolicy
    host: str  # normalised CONNECT host
    port: int


class EgressGuard:
    def __init__(
        self,
        registry: Registry,
        resolver: Resolver,
        allowed_ports: frozenset[int],
        max_scrub_bytes: int = 10 * 1024 * 1024,
    ) -> None:
        self.registry = registry
        self.resolver = resolver
        self.allowed_ports = allowed_ports
        self.max_scrub_bytes = max_scrub_bytes
        self._tunnels: weakref.WeakKeyDictionary[connection.Client, Tunnel] = weakref.WeakKeyDictionary()

    # -- CONNECT -----------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        client_ip = flow.client_conn.peername[0]
        policy = None
        try:
            policy = self.registry.identify(client_ip, flow.request.headers.get("Proxy-Authorization"))
            host = check_destination(policy, flow.request.host, flow.request.port, self.allowed_ports)
        except Refused as refused:
            self._refuse(flow, refused, client_ip, policy)
            return
        self._tunnels[flow.client_conn] = Tunnel(policy, host, flow.request.port)
        self._log_allowed("tunnel", policy, client_ip, host, flow.request.port)

    # -- requests ----------------------------------------------------------------------------

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        client_ip = flow.client_conn.peername[0]
        tunnel = self._tunnels.get(flow.client_conn)
        policy = tunnel.policy if tunnel else None
        try:
            if tunnel is None:
                # A plain http:// request in proxy form: it carries its own identity and target.
                policy = self.registry.identify(
                    client_ip, flow.request.headers.get("Proxy-Authorization")
                )
                host = check_destination(policy, flow.request.host, flow.request.port, self.allowed_ports)
                port = flow.request.port
            else:
                host, port = tunnel.host, tunnel.port
                if not same_host(flow.request.host, host) or flow.request.port != port:
                    raise Refused("request target does not match the CONNECT target", kind="host_mismatch")
            # The proxy credential is for the proxy only; never forward it.
            flow.request.headers.pop("Proxy-Authorization", None)
            self._check_sni(flow, host)
            self._check_host_header(flow, host, port)
            ips = await self.resolver.resolve(host, port)
        except Refused as refused:
            self._refuse(flow, refused, client_ip, policy)
            return
        self._pin(flow, ips[0])
        assert policy is not None
        flow.request.stream = True  # bodies are never inspected: stream them, whatever their size
        secrets = policy.secrets_for(host)
        substituted = False
        if secrets and flow.request.scheme == "https":
            values = await self.registry.values(policy, secrets)
            substituted = self._substitute_headers(flow, values)
            if substituted:
                flow.metadata[_SCRUB] = {value: marker for marker, value in values.items()}
                SUBSTITUTIONS.inc()
        self._log_allowed("request", policy, client_ip, host, port, substituted=substituted)

    @staticmethod
    def _pin(flow: http.HTTPFlow, ip: str) -> None:
        """Send the request to the checked address, keeping the Host header (and so the name).

        Targeting the address (rather than the name) also lets mitmproxy reuse the upstream
        connection for the next request of the same tunnel, since both then name the same address.
        """
        header = flow.request.host_header
        flow.request.host = ip
        flow.request.host_header = header

    def _check_sni(self, flow: http.HTTPFlow, host: str) -> None:
        sni = flow.client_conn.sni
        if flow.client_conn.tls_established and sni is not None and not same_host(sni, host):
            raise Refused(f"TLS SNI {sni!r} does not match the CONNECT host {host}", kind="sni_mismatch")

    def _check_host_header(self, flow: http.HTTPFlow, host: str, port: int) -> None:
        header = flow.request.host_header
        if not header:
            raise Refused("request has no Host header", kind="host_mismatch")
        try:
            named, named_port = url.parse_authority(header, check=True)
        except ValueError:
            raise Refused("malformed Host header", kind="host_mismatch") from None
        if not same_host(named, host) or (named_port is not None and named_port != port):
            raise Refused(f"Host header {header!r} does not match the destination {host}", kind="host_mismatch")

    def _substitute_headers(self, flow: http.HTTPFlow, values: dict[str, str]) -> bool:
        if not values:
            return False
        changed = False
        fields = []
        for name, raw in flow.request.headers.fields:
            text = raw.decode("utf-8", "surrogateescape")
            new = placeholders.substitute(text, values)
            if new != text:
                changed = True
                raw = new.encode("utf-8", "surrogateescape")
            fields.append((name, raw))
        if changed:
            flow.request.headers.fields = tuple(fields)
        return changed

    # -- responses ---------------------------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        assert flow.response is not None
        scrub = flow.metadata.get(_SCRUB)
        if not scrub:
            flow.response.stream = True
            return
        fields = []
        for name, raw in flow.response.headers.fields:
            text = raw.decode("utf-8", "surrogateescape")
            fields.append((name, placeholders.scrub(text, scrub).encode("utf-8", "surrogateescape")))
        flow.response.headers.fields = tuple(fields)
        length = flow.response.headers.get("content-length", "")
        # Buffer (and scrub) small replies only; big ones stream through unchanged.
        small = length.isdigit() and int(length) <= self.max_scrub_bytes
        flow.response.stream = not small

    def response(self, flow: http.HTTPFlow) -> None:
        scrub = flow.metadata.get(_SCRUB)
        if not scrub or flow.response is None or flow.response.stream:
            return
        body = flow.response.get_content(strict=False) or b""
        for value, marker in scrub.items():
            body = body.replace(value.encode(), marker.encode())
        flow.response.set_content(body)

    # -- connections -------------------------------------------------------------------------

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Last gate before a socket opens: only checked addresses, certificates checked by name.

        Requests normally arrive here already pinned to an address (see `_pin`); anything that
        still names a host is resolved and checked here rather than by a fresh system lookup.
        """
        address = data.server.address
        if address is None:
            return
        host, port = address[0], address[1]
        try:
            if domains.is_ip_literal(host):
                if not self.resolver.acceptable(host.strip("[]")):
                    raise Refused(f"{host} is not a public address", kind="private_address")
            else:
                name = domains.normalize_host(host)
                ips = await self.resolver.resolve(name, port)
                data.server.address = (ips[0], port)
                data.server.sni = name
        except (Refused, domains.DomainError) as refused:
            data.server.error = str(refused)
            return
        tunnel = self._tunnels.get(data.client)
        if tunnel is not None:
            data.server.sni = tunnel.host  # verify the upstream certificate against the name

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        tunnel = self._tunnels.get(flow.client_conn)
        policy_id = tunnel.policy.container_id if tunnel else None
        REQUESTS.labels("refused", "not_http").inc()
        logger.warning(
            "egress refused: only HTTP(S) is allowed through the proxy",
            extra={"container": policy_id, "client": flow.client_conn.peername[0],
                   "host": tunnel.host if tunnel else None, "reason_kind": "not_http"},
        )
        flow.kill()

    # -- helpers -----------------------------------------------------------------------------

    def _refuse(
        self, flow: http.HTTPFlow, refused: Refused, client_ip: str, policy: ContainerPolicy | None
    ) -> None:
        status = 407 if isinstance(refused, CredentialsRequired) else 403
        headers = {"Content-Type": "text/plain; charset=utf-8", "X-Kontainers-Egress": "refused"}
        if status == 407:
            headers["Proxy-Authenticate"] = 'Basic realm="kontainers-egress"'
        flow.response = http.Response.make(
            status, f"kontainers egress proxy refused this request: {refused}\n", headers
        )
        REQUESTS.labels("refused", refused.kind).inc()
        logger.warning(
            f"egress refused: {refused}",
            extra={"container": policy.container_id if policy else None, "client": client_ip,
                   "host": flow.request.host, "port": flow.request.port,
                   "method": flow.request.method, "reason_kind": refused.kind},
        )

    def _log_allowed(
        self, what: str, policy: ContainerPolicy, client_ip: str, host: str, port: int,
        substituted: bool = False,
    ) -> None:
        REQUESTS.labels("allowed", what).inc()
        logger.info(
            f"egress allowed: {what} to {host}:{port}",
            extra={"container": policy.container_id, "client": client_ip, "host": host,
                   "port": port, "secrets_substituted": substituted},
        )
