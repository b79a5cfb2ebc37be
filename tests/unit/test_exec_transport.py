"""The exec output bounds and the pods/exec websocket client (against a fake API server)."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kontainers.gateway.exec_runner import ExecFailed, ExecUnavailable, OutputBuffer
from kontainers.gateway.pod_exec import PodExec, exec_url, exit_code_of


def test_short_output_is_kept_whole_and_streamed_in_halves() -> None:
    buffer = OutputBuffer(10)
    assert buffer.feed(b"abcdefgh") == "abcde"  # the first half streams at once
    assert buffer.finish() == "fgh" and buffer.text() == "abcdefgh"


def test_long_output_keeps_head_and_tail_with_a_marker() -> None:
    buffer = OutputBuffer(6)
    live = "".join(buffer.feed(chunk) for chunk in (b"0123", b"456789", b"ABCDEF"))
    assert live == "012"
    assert buffer.text() == "012\n[... 10 characters truncated ...]\nDEF"
    assert live + buffer.finish() == buffer.text()


def test_utf8_split_across_chunks_and_invalid_bytes() -> None:
    buffer = OutputBuffer(100)
    data = "é€😀".encode()
    assert "".join(buffer.feed(data[i:i + 1]) for i in range(len(data))) + buffer.finish() == "é€😀"
    buffer = OutputBuffer(100)
    buffer.feed(b"\xff ok \xe2\x82")
    assert buffer.text() == "\ufffd ok \ufffd"


def test_zero_keeps_only_the_marker() -> None:
    buffer = OutputBuffer(0)
    assert buffer.feed(b"abc") == ""
    assert buffer.text() == "\n[... 3 characters truncated ...]\n"
    assert OutputBuffer(0).text() == ""


def test_memory_stays_bounded_whatever_is_fed() -> None:
    buffer = OutputBuffer(1000)
    chunk = b"y\n" * 16384
    for _ in range(3000):  # ~100 MB
        buffer.feed(chunk)
        assert buffer._tail_len <= 500 and sum(map(len, buffer._tail)) <= 500
    assert buffer.dropped == 3000 * len(chunk) - 1000
    assert len(buffer.text()) < 1100


@pytest.mark.parametrize("raw, code", [
    (b'{"metadata":{},"status":"Success"}', 0),
    (json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "message": "command terminated",
                 "details": {"causes": [{"reason": "ExitCode", "message": "137"}]}}).encode(), 137),
])
def test_exit_code_from_status(raw, code) -> None:
    assert exit_code_of(raw) == code


@pytest.mark.parametrize("raw", [b"", b"nope", b'{"status":"Failure","message":"exec: \\"/bin/sh\\": not found"}'])
def test_other_statuses_are_exec_failures(raw) -> None:
    with pytest.raises(ExecFailed):
        exit_code_of(raw)


def test_url_keeps_every_character_of_the_argv() -> None:
    url = exec_url("https://api.example:6443/", "ns", "pod-1", "sandbox", ["/bin/sh", "-c", "echo 1+1 & é%"])
    assert str(url).startswith("wss://api.example:6443/api/v1/namespaces/ns/pods/pod-1/exec?container=sandbox&")
    assert url.query.getall("command") == ["/bin/sh", "-c", "echo 1+1 & é%"]
    assert "1%2B1" in url.raw_query_string


class FakeAPIServer:
    """The API server's side of pods/exec: a websocket speaking the v5/v4 channel protocols."""

    def __init__(self, protocols=("v5.channel.k8s.io", "v4.channel.k8s.io")) -> None:
        self.protocols = protocols
        self.requests: list[web.Request] = []
        self.frames: list[bytes] = []
        self.status = b'{"metadata":{},"status":"Success"}'
        self.http_status: int | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.http_status:
            return web.json_response({"kind": "Status", "status": "Failure"}, status=self.http_status)
        ws = web.WebSocketResponse(protocols=self.protocols)
        await ws.prepare(request)
        for channel in (1, 2, 3):  # the empty frame each channel starts with
            await ws.send_bytes(bytes([channel]))
        for frame in self.frames:
            await ws.send_bytes(frame)
        await ws.send_bytes(b"\x03" + self.status)
        await ws.close()
        return ws

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{pod}/exec", self.handle)
        return app


@pytest.fixture
async def api_server():
    fake = FakeAPIServer()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    yield fake, server
    await server.close()


async def pod_exec_for(server: TestServer):
    from kubernetes_asyncio import client

    cfg = client.Configuration(host=f"http://127.0.0.1:{server.port}")
    cfg.api_key = {"BearerToken": "Bearer the-token"}
    api = client.ApiClient(cfg)
    return PodExec(lambda: api), api


async def run_collect(transport: PodExec, argv=("/bin/sh", "-c", "echo hi")):
    got: list[tuple[int, bytes]] = []

    async def sink(channel, data):
        got.append((channel, data))

    code = await transport.run("ns", "the-pod", "sandbox", list(argv), sink)
    return code, got


async def test_pod_exec_streams_channels_in_order_and_reports_the_exit_code(api_server) -> None:
    fake, server = api_server
    fake.frames = [b"\x01out1", b"\x02err1", b"\x01out2"]
    fake.status = json.dumps({"status": "Failure", "reason": "NonZeroExitCode",
                              "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}).encode()
    transport, api = await pod_exec_for(server)
    try:
        code, got = await run_collect(transport, ["/bin/sh", "-c", "a+b"])
    finally:
        await transport.close()
        await api.close()
    assert code == 3 and got == [(1, b"out1"), (2, b"err1"), (1, b"out2")]
    request = fake.requests[0]
    assert request.headers["Authorization"] == "Bearer the-token"
    offered = [p.strip() for p in request.headers["Sec-WebSocket-Protocol"].split(",")]
    assert offered == ["v5.channel.k8s.io", "v4.channel.k8s.io"]
    assert request.query.getall("command") == ["/bin/sh", "-c", "a+b"]
    assert request.query["container"] == "sandbox" and request.query["stdout"] == "true"
    assert "stdin" not in request.query and request.match_info["pod"] == "the-pod"


async def test_pod_exec_speaks_v4_too(api_server) -> None:
    fake, server = api_server
    fake.protocols = ("v4.channel.k8s.io",)
    transport, api = await pod_exec_for(server)
    try:
        assert (await run_collect(transport))[0] == 0
    finally:
        await transport.close()
        await api.close()


@pytest.mark.parametrize("status, error", [(404, ExecUnavailable), (400, ExecUnavailable), (403, ExecFailed)])
async def test_pod_exec_handshake_refusals(api_server, status, error) -> None:
    fake, server = api_server
    fake.http_status = status
    transport, api = await pod_exec_for(server)
    try:
        with pytest.raises(error):
            await run_collect(transport)
    finally:
        await transport.close()
        await api.close()


async def test_pod_exec_unreachable_api_server_is_unavailable() -> None:
    import socket

    from kubernetes_asyncio import client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{port}"))
    transport = PodExec(lambda: api)
    try:
        with pytest.raises(ExecUnavailable):
            await run_collect(transport)
    finally:
        await transport.close()
        await api.close()
