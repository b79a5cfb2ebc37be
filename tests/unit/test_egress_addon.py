"""The mitmproxy addon's decisions on synthetic flows (mitmproxy.test helpers), without sockets."""

from __future__ import annotations

import base64

import pytest
from mitmproxy import connection, http
from mitmproxy.proxy import server_hooks
from mitmproxy.test import tflow, tutils

from kontainers.egress import placeholders
from kontainers.egress.addon import EgressGuard
from kontainers.egress.policy import ContainerPolicy, DomainSecret
from kontainers.egress.registry import Registry
from kontainers.egress.resolver import Resolver

SECRET = "s3cret-value"
PH = placeholders.placeholder("uid-a", "API_KEY")


@pytest.fixture
def guard() -> EgressGuard:
    registry = Registry()
    policy = ContainerPolicy(
        "cntr_a", allowed_domains=("api.test", "plain.test"), pod_ip="10.0.0.5", proxy_token="tok",
        domain_secrets=(DomainSecret("api.test", "API_KEY", PH),),
    )
    registry.put(policy)
    registry.set_value("cntr_a", policy.domain_secrets[0], SECRET)
    resolver = Resolver({"api.test": "93.184.216.34", "plain.test": "93.184.216.35"})
    return EgressGuard(registry, resolver, frozenset({443, 80}))


def client(ip: str = "10.0.0.5", sni: str | None = None) -> connection.Client:
    conn = tflow.tclient_conn()
    conn.peername = (ip, 40000)
    conn.sni = sni
    conn.timestamp_tls_setup = 1.0 if sni is not None else None  # i.e. tls_established
    return conn


def connect_flow(conn: connection.Client, host: str = "api.test", port: int = 443) -> http.HTTPFlow:
    flow = tflow.tflow(client_conn=conn, req=tutils.treq(
        method=b"CONNECT", host=host, port=port, path=b"", authority=f"{host}:{port}".encode(), headers=()))
    return flow


def request_flow(conn: connection.Client, host: str, port: int, scheme: str, headers: dict[str, str]) -> http.HTTPFlow:
    req = tutils.treq(host=host, port=port, scheme=scheme.encode(), path=b"/x", headers=(), content=b"")
    for name, value in headers.items():
        req.headers[name] = value
    return tflow.tflow(client_conn=conn, req=req)


async def tunnel_request(guard: EgressGuard, headers: dict[str, str], sni: str = "api.test", host: str = "api.test"):
    conn = client(sni=sni)
    connect = connect_flow(conn, host)
    guard.http_connect(connect)
    assert connect.response is None
    flow = request_flow(conn, host, 443, "https", headers)
    await guard.requestheaders(flow)
    return flow


def test_connect_from_an_unknown_address_is_refused(guard: EgressGuard) -> None:
    flow = connect_flow(client("10.9.9.9"))
    guard.http_connect(flow)
    assert flow.response.status_code == 403
    assert b"not a running container" in flow.response.content


def test_connect_to_a_name_off_the_list(guard: EgressGuard) -> None:
    flow = connect_flow(client(), "evil.test")
    guard.http_connect(flow)
    assert flow.response.status_code == 403 and b"allowed_domains" in flow.response.content


async def test_secret_substituted_for_its_domain_over_https(guard: EgressGuard) -> None:
    flow = await tunnel_request(guard, {"Host": "api.test", "Authorization": f"Bearer {PH}"})
    assert flow.response is None
    assert flow.request.headers["Authorization"] == f"Bearer {SECRET}"
    assert flow.request.host == "93.184.216.34" and flow.request.host_header == "api.test"  # pinned
    assert flow.request.stream is True


async def test_sni_and_host_header_must_name_the_connect_host(guard: EgressGuard) -> None:
    flow = await tunnel_request(guard, {"Host": "api.test", "Authorization": f"Bearer {PH}"}, sni="evil.test")
    assert flow.response.status_code == 403 and b"SNI" in flow.response.content
    assert flow.request.headers["Authorization"] == f"Bearer {PH}"
    flow = await tunnel_request(guard, {"Host": "evil.test", "Authorization": f"Bearer {PH}"})
    assert flow.response.status_code == 403 and b"Host header" in flow.response.content
    assert flow.request.headers["Authorization"] == f"Bearer {PH}"


async def test_plain_http_never_gets_the_secret_and_loses_proxy_credentials(guard: EgressGuard) -> None:
    credentials = "Basic " + base64.b64encode(b"cntr_a:tok").decode()
    flow = request_flow(client(), "api.test", 80, "http",
                        {"Host": "api.test", "Authorization": f"Bearer {PH}", "Proxy-Authorization": credentials})
    await guard.requestheaders(flow)
    assert flow.response is None
    assert flow.request.headers["Authorization"] == f"Bearer {PH}"
    assert "Proxy-Authorization" not in flow.request.headers


async def test_other_allowed_domain_keeps_the_placeholder(guard: EgressGuard) -> None:
    conn = client(sni="plain.test")
    guard.http_connect(connect_flow(conn, "plain.test"))
    flow = request_flow(conn, "plain.test", 443, "https", {"Host": "plain.test", "X-Key": PH})
    await guard.requestheaders(flow)
    assert flow.response is None and flow.request.headers["X-Key"] == PH


async def test_reflected_secret_is_scrubbed_from_the_reply(guard: EgressGuard) -> None:
    flow = await tunnel_request(guard, {"Host": "api.test", "Authorization": f"Bearer {PH}"})
    flow.response = tutils.tresp(content=f'{{"echo": "Bearer {SECRET}"}}'.encode())
    flow.response.headers["X-Echo"] = SECRET
    guard.responseheaders(flow)
    assert flow.response.stream is False  # small: buffered so that it can be scrubbed
    guard.response(flow)
    assert SECRET.encode() not in flow.response.content and PH.encode() in flow.response.content
    assert flow.response.headers["X-Echo"] == PH


async def test_server_connect_uses_only_checked_addresses(guard: EgressGuard) -> None:
    conn = client(sni="api.test")
    guard.http_connect(connect_flow(conn))
    server = connection.Server(address=("api.test", 443))
    await guard.server_connect(server_hooks.ServerConnectionHookData(server=server, client=conn))
    assert server.address == ("93.184.216.34", 443) and server.sni == "api.test" and server.error is None
    internal = connection.Server(address=("10.0.0.1", 443))
    await guard.server_connect(server_hooks.ServerConnectionHookData(server=internal, client=conn))
    assert internal.error and "not a public address" in internal.error


def test_wrong_proxy_credentials_get_407(guard: EgressGuard) -> None:
    flow = connect_flow(client())
    flow.request.headers["Proxy-Authorization"] = "Basic " + base64.b64encode(b"cntr_a:nope").decode()
    guard.http_connect(flow)
    assert flow.response.status_code == 407 and "Proxy-Authenticate" in flow.response.headers
