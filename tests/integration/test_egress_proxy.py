"""End to end on this machine: `kontainers egress` on loopback between sandbox-like clients and
local HTTPS test servers whose names the proxy resolves from its test host map.

Clients are configured only the way a sandbox is (kontainers.egress.sandbox.proxy_env: proxy
variables + the proxy's CA bundle), or speak raw CONNECT/TLS to try bypasses. The container is
identified by proxy credentials (container A) or by its client address 127.0.0.3 (container B).
No traffic leaves the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from kontainers.egress import placeholders
from kontainers.egress.sandbox import proxy_env
from fixtures.egress import ProxyProcess, ServerThread, TestServer, TlsMaterial
from kontainers.resources import names

UID_A, TOKEN_A = "uid-container-a", "token-a"
UID_B, ADDRESS_B = "uid-container-b", "127.0.0.3"
ID_A, ID_B = names.container_id(UID_A), names.container_id(UID_B)
SECRET = "sk-live-" + secrets.token_hex(16)
PLACEHOLDER = placeholders.placeholder(UID_A, "API_KEY")
NAMES = ["allowed.test", "second.test", "other.test", "x.wild.test", "rebind.test"]


class Env:
    def __init__(self, tmp: Path, https: TestServer, http: TestServer, proxy: ProxyProcess) -> None:
        self.tmp, self.https, self.http, self.proxy = tmp, https, http, proxy

    def sandbox_env(self, user: str | None = ID_A, token: str | None = TOKEN_A) -> dict[str, str]:
        """The environment of an allowlist sandbox, with the test CA path and test credentials."""
        env = {e["name"]: e["value"] for e in proxy_env(self.proxy.proxy_url(user, token), str(self.proxy.ca_file))}
        return {"PATH": os.environ["PATH"], "HOME": str(self.tmp), **env}

    def url(self, name: str, path: str = "/", tls: bool = True) -> str:
        if tls:
            return f"https://{name}:{self.https.port}{path}"
        return f"http://{name}:{self.http.port}{path}"

    def received_by(self, server: TestServer, name: str) -> list:
        return [r for r in server.received if r.host.split(":")[0] == name]


@pytest.fixture(scope="module")
def egress(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("egress")
    tls = TlsMaterial.create(tmp / "tls", NAMES)
    servers = ServerThread()
    https, http = servers.start(tls), servers.start(None)
    host_map = {n: "127.0.0.1" for n in NAMES}
    host_map["rebind.test"] = "10.0.0.1"  # an allowed name whose DNS answer is internal
    containers = [
        {
            "uid": UID_A, "proxyToken": TOKEN_A,
            "allowedDomains": ["allowed.test", "second.test", "*.wild.test", "rebind.test"],
            "domainSecrets": [{"domain": "allowed.test", "name": "API_KEY", "value": SECRET}],
        },
        {"uid": UID_B, "clientIPs": [ADDRESS_B], "allowedDomains": ["other.test"]},
    ]
    proxy = ProxyProcess(tmp / "proxy", containers, host_map, [443, 80, https.port, http.port], tls.ca_file,
                         log_level="DEBUG")  # the most verbose logs must not leak either
    try:
        proxy.start()
        yield Env(tmp, https, http, proxy)
    finally:
        proxy.stop()
        servers.stop()


def curl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], env=env, capture_output=True, text=True)


def python_client(env: dict[str, str], url: str, headers: dict[str, str] | None = None) -> dict:
    """A Python program in the sandbox: urllib, configured by the environment alone."""
    code = (
        "import json, sys, urllib.request, urllib.error\n"
        "req = urllib.request.Request(sys.argv[1], headers=json.loads(sys.argv[2]))\n"
        "try:\n"
        "    r = urllib.request.urlopen(req, timeout=20); print(json.dumps({'status': r.status, 'body': r.read().decode()}))\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(json.dumps({'status': e.code, 'body': e.read().decode()}))\n"
        "except Exception as e:\n"
        "    print(json.dumps({'status': None, 'body': repr(e)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, url, json.dumps(headers or {})], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def raw_request(
    egress: Env, connect: str, sni: str | None, host_header: str | None, port: int | None = None,
    auth: tuple[str, str] | None = (ID_A, TOKEN_A), extra: str = "", source: str = "127.0.0.1",
) -> tuple[int, str]:
    """CONNECT, TLS with a chosen SNI, one GET with a chosen Host header; (status, body) of the
    CONNECT refusal or of the request."""
    port = port or egress.https.port
    sock = socket.create_connection(("127.0.0.1", egress.proxy.port), timeout=20, source_address=(source, 0))
    head = f"CONNECT {connect}:{port} HTTP/1.1\r\nHost: {connect}:{port}\r\n"
    if auth:
        import base64
        head += "Proxy-Authorization: Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() + "\r\n"
    sock.sendall((head + "\r\n").encode())
    status, body = _read_response(sock)
    if status != 200:
        sock.close()
        return status, body
    context = ssl.create_default_context(cafile=str(egress.proxy.ca_file))
    context.check_hostname = sni is not None
    tls = context.wrap_socket(sock, server_hostname=sni)
    host_line = f"Host: {host_header}\r\n" if host_header is not None else ""
    tls.sendall(f"GET /raw HTTP/1.1\r\n{host_line}{extra}Connection: close\r\n\r\n".encode())
    status, body = _read_response(tls, until_close=True)
    tls.close()
    return status, body


def _read_response(sock, until_close: bool = False) -> tuple[int, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    length = None
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    while (length is not None and len(body) < length) or (length is None and until_close):
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, OSError):
            break
        if not chunk:
            break
        body += chunk
    return status, body.decode(errors="replace")


# -- reaching allowed names --------------------------------------------------------------------

def test_sandbox_clients_reach_an_allowed_name(egress: Env) -> None:
    env = egress.sandbox_env()
    reply = python_client(env, egress.url("allowed.test", "/python"))
    assert reply["status"] == 200, reply
    assert json.loads(reply["body"])["host"] == f"allowed.test:{egress.https.port}"
    done = curl(env, egress.url("x.wild.test", "/curl-wildcard"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["path"] == "/curl-wildcard"
    assert [r.path for r in egress.received_by(egress.https, "x.wild.test")] == ["/curl-wildcard"]


def test_plain_http_is_forwarded_for_allowed_names(egress: Env) -> None:
    reply = python_client(egress.sandbox_env(), egress.url("second.test", "/plain", tls=False))
    assert reply["status"] == 200, reply
    assert [r.path for r in egress.received_by(egress.http, "second.test")] == ["/plain"]
    assert "Proxy-Authorization" not in egress.received_by(egress.http, "second.test")[0].headers


# -- refusals ------------------------------------------------------------------------------------

def test_a_name_not_on_the_allowlist_is_refused_with_the_reason(egress: Env) -> None:
    env = egress.sandbox_env()
    done = curl(env, egress.url("other.test", "/nope"))
    assert done.returncode != 0 and "403" in done.stderr
    status, body = raw_request(egress, "other.test", "other.test", f"other.test:{egress.https.port}")
    assert status == 403 and "other.test is not in this container's allowed_domains" in body
    reply = python_client(env, egress.url("other.test", "/nope-http", tls=False))
    assert reply["status"] == 403 and "allowed_domains" in reply["body"]
    assert egress.received_by(egress.https, "other.test") == []
    assert egress.received_by(egress.http, "other.test") == []


def test_sni_that_differs_from_the_connect_host_is_refused(egress: Env) -> None:
    status, body = raw_request(egress, "allowed.test", "other.test", f"other.test:{egress.https.port}")
    assert status == 403 and "SNI" in body
    status, body = raw_request(egress, "allowed.test", "other.test", f"allowed.test:{egress.https.port}")
    assert status == 403 and "SNI" in body
    assert egress.received_by(egress.https, "other.test") == []


def test_host_header_that_differs_from_the_connect_host_is_refused(egress: Env) -> None:
    status, body = raw_request(egress, "allowed.test", "allowed.test", f"other.test:{egress.https.port}")
    assert status == 403 and "Host header" in body
    status, body = raw_request(egress, "allowed.test", "allowed.test", None)
    assert status == 403 and "no Host header" in body
    assert egress.received_by(egress.https, "other.test") == []
    # The same tunnel with a matching SNI and Host works, so the refusals above were the mismatch.
    status, _ = raw_request(egress, "allowed.test", "allowed.test", f"allowed.test:{egress.https.port}")
    assert status == 200


def test_ip_literals_ports_and_rebinding_are_refused(egress: Env) -> None:
    status, body = raw_request(egress, "127.0.0.1", None, None)
    assert status == 403 and "IP address" in body
    status, body = raw_request(egress, "allowed.test", None, None, port=22)
    assert status == 403 and "port 22 is not allowed" in body
    # rebind.test is on the allowlist, but its DNS answer (10.0.0.1) is internal.
    status, body = raw_request(egress, "rebind.test", "rebind.test", f"rebind.test:{egress.https.port}")
    assert status == 403 and "non-public address" in body


def test_non_http_in_a_tunnel_is_cut(egress: Env) -> None:
    sock = socket.create_connection(("127.0.0.1", egress.proxy.port), timeout=10)
    import base64
    auth = base64.b64encode(f"{ID_A}:{TOKEN_A}".encode()).decode()
    sock.sendall(f"CONNECT allowed.test:{egress.https.port} HTTP/1.1\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
    status, _ = _read_response(sock)
    assert status == 200
    sock.sendall(b"SSH-2.0-OpenSSH_9.0\r\n")
    leftover = b""
    try:
        while chunk := sock.recv(4096):
            leftover += chunk
    except OSError:
        pass
    sock.close()
    assert b"SSH" not in leftover  # nothing answered from upstream; the proxy closed it


# -- identity --------------------------------------------------------------------------------

def test_container_identified_by_its_address(egress: Env) -> None:
    env = egress.sandbox_env(user=None, token=None)
    done = curl(env, "--interface", ADDRESS_B, egress.url("other.test", "/from-b"))
    assert done.returncode == 0, done.stderr
    assert [r.path for r in egress.received_by(egress.https, "other.test")] == ["/from-b"]
    done = curl(env, "--interface", ADDRESS_B, egress.url("allowed.test", "/b-not-allowed"))
    assert done.returncode != 0 and "403" in done.stderr
    # An address that is no container, without credentials: refused.
    status, body = raw_request(egress, "allowed.test", None, None, auth=None)
    assert status == 403 and "not a running container" in body
    # Credentials of A from B's address: refused, whatever the credentials say.
    status, body = raw_request(egress, "allowed.test", None, None, source=ADDRESS_B)
    assert status == 403 and "another container" in body


def test_wrong_credentials_get_407(egress: Env) -> None:
    status, body = raw_request(egress, "allowed.test", None, None, auth=(ID_A, "wrong"))
    assert status == 407 and "invalid proxy credentials" in body


# -- domain secrets ----------------------------------------------------------------------------

def test_placeholder_becomes_the_secret_only_for_its_domain(egress: Env) -> None:
    env = egress.sandbox_env()
    headers = {"Authorization": f"Bearer {PLACEHOLDER}", "X-Api-Key": PLACEHOLDER}

    reply = python_client(env, egress.url("allowed.test", "/with-secret"), headers)
    assert reply["status"] == 200
    (arrived,) = [r for r in egress.received_by(egress.https, "allowed.test") if r.path == "/with-secret"]
    assert arrived.headers["Authorization"] == f"Bearer {SECRET}"
    assert arrived.headers["X-Api-Key"] == SECRET
    # The server echoed the headers back: the sandbox sees the placeholder, not the value.
    assert SECRET not in reply["body"] and PLACEHOLDER in reply["body"]

    # Another allowed domain: the placeholder stays a useless placeholder.
    python_client(env, egress.url("second.test", "/other-domain"), headers)
    (arrived,) = [r for r in egress.received_by(egress.https, "second.test") if r.path == "/other-domain"]
    assert arrived.headers["Authorization"] == f"Bearer {PLACEHOLDER}"

    # A destination that is not allowed: refused, nothing arrives at all.
    reply = python_client(env, egress.url("other.test", "/exfiltrate"), headers)
    assert reply["status"] is None or reply["status"] == 403
    assert [r for r in egress.received_by(egress.https, "other.test") if r.path == "/exfiltrate"] == []

    # The secret's own domain over plain HTTP: never substituted (it would travel in clear text).
    python_client(env, egress.url("allowed.test", "/cleartext", tls=False), headers)
    (arrived,) = [r for r in egress.received_by(egress.http, "allowed.test") if r.path == "/cleartext"]
    assert arrived.headers["Authorization"] == f"Bearer {PLACEHOLDER}"

    # Basic credentials carrying the placeholder as password.
    done = curl(env, "-u", f"user:{PLACEHOLDER}", egress.url("allowed.test", "/basic"))
    assert done.returncode == 0, done.stderr
    (arrived,) = [r for r in egress.received_by(egress.https, "allowed.test") if r.path == "/basic"]
    import base64
    assert base64.b64decode(arrived.headers["Authorization"].split()[1]).decode() == f"user:{SECRET}"
    assert SECRET not in done.stdout


def test_another_container_cannot_use_a_placeholder(egress: Env) -> None:
    env = egress.sandbox_env(user=None, token=None)
    done = curl(env, "--interface", ADDRESS_B, "-H", f"Authorization: Bearer {PLACEHOLDER}",
                egress.url("other.test", "/b-with-a-placeholder"))
    assert done.returncode == 0, done.stderr
    (arrived,) = [r for r in egress.received_by(egress.https, "other.test") if r.path == "/b-with-a-placeholder"]
    assert arrived.headers["Authorization"] == f"Bearer {PLACEHOLDER}"


def test_zz_no_secret_value_in_the_logs(egress: Env) -> None:
    """Runs last in this module: every request above, refused or not, was logged at DEBUG."""
    log = egress.proxy.log_file.read_text()
    assert "egress refused" in log and "egress allowed" in log
    assert SECRET not in log
    assert TOKEN_A not in log
    assert "hpack" not in log  # header codecs stay quiet even at DEBUG
