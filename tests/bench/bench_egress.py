"""Benchmark: the egress proxy's throughput and added latency, on loopback.

    python tests/bench/bench_egress.py [--size-mib 100] [--requests 200] [--connections 50]

Starts a local HTTPS test server (its own event loop thread) and `kontainers egress` (subprocess,
static policy, the test name resolved to 127.0.0.1), then measures with curl and http.client:

- download of --size-mib MiB over HTTPS, directly and through the proxy (which intercepts TLS:
  decrypts and re-encrypts every byte), best of 3, in MiB/s, and the proxy's peak RSS;
- per-request latency of small GETs on one keep-alive connection (p50/p99), directly and through
  the proxy, and of fresh connections (TCP + CONNECT + both TLS handshakes) — the difference is
  what the proxy adds.

Prints the figures; asserts only that every transfer was complete and answered 200.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fixtures.egress import ProxyProcess, ServerThread, TlsMaterial
from kontainers.resources import names

MIB = 1024 * 1024
NAME = "download.test"
UID, TOKEN = "bench-uid", "bench-token"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def curl_download(url: str, size: int, env: dict[str, str], extra: list[str]) -> float:
    done = subprocess.run(
        ["curl", "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", *extra, url],
        env=env, capture_output=True, text=True, check=True,
    )
    got, seconds = done.stdout.split()
    assert int(got) == size, f"incomplete download: {got} of {size} bytes"
    return size / MIB / float(seconds)


def latencies(connect, count: int, fresh: bool) -> list[float]:
    """Seconds per GET: on one keep-alive connection, or each on a new one."""
    times = []
    conn = None if fresh else connect()
    for _ in range(count):
        started = time.perf_counter()
        if fresh:
            conn = connect()
        conn.request("GET", "/ping", headers={"Host": NAME_WITH_PORT})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        times.append(time.perf_counter() - started)
        if fresh:
            conn.close()
    if not fresh:
        conn.close()
    return times


def summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms"


def main(argv: list[str]) -> int:
    global NAME_WITH_PORT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args(argv)
    size = args.size_mib * MIB

    with tempfile.TemporaryDirectory(prefix="bench-egress-") as tmp_dir:
        tmp = Path(tmp_dir)
        tls = TlsMaterial.create(tmp / "tls", [NAME])
        servers = ServerThread()
        server = servers.start(tls)
        NAME_WITH_PORT = f"{NAME}:{server.port}"
        proxy = ProxyProcess(
            tmp / "proxy", [{"uid": UID, "proxyToken": TOKEN, "allowedDomains": [NAME]}],
            {NAME: "127.0.0.1"}, [443, server.port], tls.ca_file,
        )
        proxy.start()
        try:
            cid = names.container_id(UID)
            url = f"https://{NAME}:{server.port}/bytes/{{}}"
            base_env = {"PATH": os.environ["PATH"]}
            direct = ["--resolve", f"{NAME}:{server.port}:127.0.0.1", "--cacert", str(tls.ca_file)]
            proxied = ["--proxy", proxy.proxy_url(cid, TOKEN), "--cacert", str(proxy.ca_file)]
            curl_download(url.format(8 * MIB), 8 * MIB, base_env, direct)  # warm-up
            curl_download(url.format(8 * MIB), 8 * MIB, base_env, proxied)
            direct_rate = max(curl_download(url.format(size), size, base_env, direct) for _ in range(3))
            proxy_rate = max(curl_download(url.format(size), size, base_env, proxied) for _ in range(3))
            rss = peak_rss_mib(proxy.process.pid)

            upstream_ctx = ssl.create_default_context(cafile=str(tls.ca_file))
            proxy_ctx = ssl.create_default_context(cafile=str(proxy.ca_file))
            auth = base64.b64encode(f"{cid}:{TOKEN}".encode()).decode()

            def connect_direct():
                return NamedHTTPSConnection(server.port, upstream_ctx)

            def connect_proxied():
                conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=proxy_ctx)
                conn.set_tunnel(NAME, server.port, headers={"Proxy-Authorization": f"Basic {auth}"})
                return conn

            latencies(connect_direct, 20, fresh=False)  # warm-up
            latencies(connect_proxied, 20, fresh=False)
            keep_direct = latencies(connect_direct, args.requests, fresh=False)
            keep_proxied = latencies(connect_proxied, args.requests, fresh=False)
            fresh_direct = latencies(connect_direct, args.connections, fresh=True)
            fresh_proxied = latencies(connect_proxied, args.connections, fresh=True)
        finally:
            proxy.stop()
            servers.stop()

    added_keep = statistics.median(keep_proxied) - statistics.median(keep_direct)
    added_fresh = statistics.median(fresh_proxied) - statistics.median(fresh_direct)
    print(f"egress proxy benchmark (loopback, {os.cpu_count()} CPUs, mitmproxy TLS interception)")
    print(f"  {args.size_mib} MiB HTTPS download   direct  {direct_rate:8.1f} MiB/s")
    print(f"  {args.size_mib} MiB HTTPS download   proxied {proxy_rate:8.1f} MiB/s"
          f"   ({proxy_rate / direct_rate:.0%} of direct)   proxy peak RSS {rss:.0f} MiB")
    print(f"  keep-alive GET ×{args.requests}     direct  {summary(keep_direct)}")
    print(f"  keep-alive GET ×{args.requests}     proxied {summary(keep_proxied)}   added p50 {added_keep * 1000:.2f} ms")
    print(f"  new connection GET ×{args.connections} direct  {summary(fresh_direct)}")
    print(f"  new connection GET ×{args.connections} proxied {summary(fresh_proxied)}   added p50 {added_fresh * 1000:.2f} ms")
    return 0


class NamedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to 127.0.0.1 but checks the certificate for the test name, like a resolver would."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        super().__init__("127.0.0.1", port, context=context)
        self._named_context = context

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        self.sock = self._named_context.wrap_socket(sock, server_hostname=NAME)


NAME_WITH_PORT = NAME

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
