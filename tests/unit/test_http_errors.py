"""Requests aiohttp cannot parse, against the gateway app served the way `kontainers gateway` serves
it (`api.errors.AppRunner`, the process's JSON logging) and against a real `kontainers sidecar`:
the reply is the OpenAI error body and no log line carries the key that was sent."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web

from fixtures.gateway_fake import FakeCluster, gateway_test_settings
from kontainers import observability
from kontainers.api.errors import AppRunner

KEY = "sk-kont-" + "Q7w" * 14  # the shape of a real key: 8 + 42 characters


def bad_requests(key: str) -> dict[str, bytes]:
    """Each a request aiohttp's parser refuses, every one carrying `key`."""
    head = b"GET /v1/containers HTTP/1.1\r\nHost: gateway\r\n"
    auth = f"Authorization: Bearer {key}".encode()
    return {
        "control character after the key": head + auth + b"\x01\r\n\r\n",
        "control character inside the key": head + auth[:30] + b"\x7f" + auth[30:] + b"\r\n\r\n",
        "key in a header over 8 KB": head + auth + b"A" * 9000 + b"\r\n\r\n",
        "key, then another header over 8 KB": head + auth + b"\r\nX-Pad: " + b"p" * 9000 + b"\r\n\r\n",
        "request line over 8 KB carrying the key": (f"GET /v1/containers?k={key}&pad=".encode() + b"x" * 9000
                                                    + b" HTTP/1.1\r\nHost: gateway\r\n" + auth + b"\r\n\r\n"),
        "header name with the key and no colon": head + key.encode() + b"\r\n\r\n",
        "too many headers": head + auth + b"\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n",
        "key as the method": f"{key}\x01 / HTTP/1.1\r\nHost: gateway\r\n\r\n".encode(),
    }


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # the handler closes the connection
    finally:
        writer.close()


def split_reply(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


@pytest.fixture
def logs():
    """The process's own logging (JSON lines on one stream), DEBUG and up, aiohttp's loggers included."""
    stream = io.StringIO()
    observability.setup_logging("DEBUG", stream=stream)
    yield stream
    observability.setup_logging("INFO")


async def test_unparseable_requests_get_the_openai_error_shape_and_no_log_holds_the_key(logs) -> None:
    from kontainers.gateway.app import create_app

    cluster = FakeCluster()
    cluster.add_key(KEY, "tenant-a")
    runner = AppRunner(create_app(gateway_test_settings(), cluster=cluster), access_log=logging.getLogger("aiohttp.access"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for what, request in bad_requests(KEY).items():
            status, headers, body = split_reply(await exchange(port, request))
            assert 400 <= status < 500, what
            assert headers["content-type"].startswith("application/json"), (what, body)
            error = json.loads(body)["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
            assert KEY[8:20] not in body.decode(), what  # nor is it echoed back
        status, _, body = split_reply(await exchange(port, bad_requests(KEY)["key in a header over 8 KB"]))
        assert status == 400 and json.loads(body)["error"]["code"] == "request_too_large"
        # a byte the parser accepts (obs-text) in the key: a normal 401, nothing logged either
        request = f"GET /v1/containers HTTP/1.1\r\nHost: g\r\nConnection: close\r\nAuthorization: Bearer {KEY}".encode()
        status, _, body = split_reply(await exchange(port, request + b"\xff\r\n\r\n"))
        assert status == 401 and json.loads(body)["error"]["code"] == "invalid_api_key"
        # the server still serves well-formed requests
        request = f"GET /v1/containers HTTP/1.1\r\nHost: g\r\nConnection: close\r\nAuthorization: Bearer {KEY}\r\n\r\n"
        assert split_reply(await exchange(port, request.encode()))[0] == 200
    finally:
        await runner.cleanup()
    text = logs.getvalue()
    assert "refused a malformed HTTP request" in text  # the path that used to log the raw line ran
    for fragment in (KEY, KEY[8:], KEY[8:20], "Q7wQ7w"):
        assert fragment not in text, text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_real_sidecar_process_logs_no_token_of_unparseable_requests(tmp_path: Path) -> None:
    token = "tok-" + "R8e" * 14
    port, log = free_port(), tmp_path / "sidecar.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "kontainers.cli", "sidecar", "--host", "127.0.0.1", "--port", str(port),
         "--root", str(tmp_path / "data"), "--log-level", "DEBUG"],
        env={**os.environ, "KONTAINERS_SIDECAR_TOKEN": token}, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

        async def send_all() -> list[tuple[int, dict[str, str], bytes]]:
            return [split_reply(await exchange(port, r)) for r in bad_requests(token).values()]

        for status, headers, body in asyncio.run(send_all()):
            assert status == 400 and headers["content-type"].startswith("application/json")
            assert "error" in json.loads(body)
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0
    text = log.read_text()
    assert "refused a malformed HTTP request" in text
    assert token not in text and "R8eR8e" not in text, text
