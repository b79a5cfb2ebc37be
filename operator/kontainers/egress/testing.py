"""Test support for the egress proxy (tests and benchmark only; never imported by the proxy).

- `TlsMaterial`: a throw-away CA and one server certificate for a set of test names.
- `TestServer`: an HTTPS (or HTTP) server on loopback that records what it received.
- `ProxyProcess`: `kontainers egress` as a subprocess with a static policy file and a host map.
- `ClusterEgressProcess`: `kontainers egress` against a cluster (watch, CA Secret), as the
  operator's fixtures need it: allowlist sandboxes wait for the CA the proxy publishes.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class TlsMaterial:
    ca_file: Path
    cert_file: Path
    key_file: Path

    @classmethod
    def create(cls, directory: Path, names: list[str]) -> "TlsMaterial":
        directory.mkdir(parents=True, exist_ok=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress test upstream CA")])
        ca_cert = (
            x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        material = cls(directory / "upstream-ca.pem", directory / "server.pem", directory / "server-key.pem")
        material.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        material.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        material.key_file.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
        )
        return material

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


@dataclass
class Received:
    host: str
    path: str
    headers: dict[str, str]


class TestServer:
    """Answers every request with JSON of what it received; `/bytes/<n>` streams n bytes."""

    __test__ = False  # not a pytest test class

    def __init__(self, tls: TlsMaterial | None) -> None:
        self.tls = tls
        self.received: list[Received] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/bytes/"):
            size = int(request.path.rsplit("/", 1)[1])
            response = web.StreamResponse(headers={"Content-Length": str(size),
                                                   "Content-Type": "application/octet-stream"})
            await response.prepare(request)
            chunk = b"\0" * (1 << 20)
            sent = 0
            while sent < size:
                piece = chunk[: min(len(chunk), size - sent)]
                await response.write(piece)
                sent += len(piece)
            await response.write_eof()
            return response
        headers = {k: v for k, v in request.headers.items()}
        self.received.append(Received(request.host, request.path_qs, headers))
        return web.json_response({"host": request.host, "path": request.path_qs, "headers": headers})

    async def start(self) -> "TestServer":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        context = self.tls.server_context() if self.tls else None
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ServerThread:
    """Test servers on an event loop of their own, so blocking clients in the test never stall them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="egress test servers", daemon=True)
        self._thread.start()
        self._servers: list[TestServer] = []

    def start(self, tls: TlsMaterial | None) -> TestServer:
        server = asyncio.run_coroutine_threadsafe(TestServer(tls).start(), self.loop).result(30)
        self._servers.append(server)
        return server

    def stop(self) -> None:
        for server in self._servers:
            asyncio.run_coroutine_threadsafe(server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class _EgressProcess:
    """What both ways of running `kontainers egress` in tests share: its files, log and stop."""

    workdir: Path
    process: subprocess.Popen | None
    stop_timeout: float = 10.0

    @property
    def log_file(self) -> Path:
        return self.workdir / "egress.log"

    @property
    def ca_file(self) -> Path:
        """The proxy CA certificate a sandbox trusts (SSL_CERT_FILE)."""
        return self.workdir / "confdir" / "mitmproxy-ca-cert.pem"

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class ProxyProcess(_EgressProcess):
    """`kontainers egress` with a static policy (no Kubernetes)."""

    workdir: Path
    containers: list[dict[str, Any]]
    host_map: dict[str, str]
    allowed_ports: list[int]
    upstream_ca_file: Path | None = None
    log_level: str = "INFO"
    port: int = 0
    ops_port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout: float = 30.0) -> "ProxyProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        policy_file = self.workdir / "policy.yaml"
        policy_file.write_text(yaml.safe_dump({"containers": self.containers}))
        self.port, self.ops_port = free_port(), free_port()
        env = {
            **os.environ,
            "KONTAINERS_EGRESS_ALLOWED_PORTS": json.dumps(self.allowed_ports),
            "KONTAINERS_EGRESS_HOST_MAP": json.dumps(self.host_map),
            "KONTAINERS_EGRESS_ALLOW_LOOPBACK_UPSTREAM": "true",
            "KONTAINERS_EGRESS_LOG_LEVEL": self.log_level,
        }
        args = [
            sys.executable, "-m", "kontainers.cli", "egress",
            "--port", str(self.port), "--ops-port", str(self.ops_port),
            "--confdir", str(self.workdir / "confdir"), "--policy-file", str(policy_file),
        ]
        if self.upstream_ca_file:
            args += ["--upstream-ca-file", str(self.upstream_ca_file)]
        self.process = subprocess.Popen(
            args, env=env, stdout=self.log_file.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"egress proxy exited early:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    if self.ca_file.exists():
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"egress proxy did not start:\n{self.log_tail()}")

    def proxy_url(self, user: str | None = None, token: str | None = None) -> str:
        auth = f"{user}:{token}@" if user else ""
        return f"http://{auth}127.0.0.1:{self.port}"



async def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


class ClusterEgressProcess(_EgressProcess):
    """`kontainers egress` watching a cluster; its CA and address published in `namespace`."""

    stop_timeout = 15.0

    def __init__(self, kubeconfig: str, namespace: str, workdir: Path, extra_env: dict[str, str] | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.kubeconfig, self.namespace, self.workdir = kubeconfig, namespace, workdir
        self.env = {**os.environ, **(extra_env or {})}
        self.extra_args = extra_args
        self.port = self.ops_port = 0
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "ClusterEgressProcess":
        import urllib.request

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.ops_port = free_port(), free_port()
        args = [
            sys.executable, "-m", "kontainers.cli", "egress", "--kubeconfig", self.kubeconfig,
            "--namespace", self.namespace, "--confdir", str(self.workdir / "confdir"),
            "--port", str(self.port), "--ops-port", str(self.ops_port), *self.extra_args,
        ]
        self.process = subprocess.Popen(args, env=self.env, stdout=self.log_file.open("ab"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"egress proxy exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.ops_port}/readyz", timeout=1) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"egress proxy not ready:\n{self.log_tail()}")

