"""`kontainers sidecar` as a real process: killed mid-upload, restarted, stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

TOKEN = "process-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sidecar:
    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.port = root, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "KONTAINERS_SIDECAR_TOKEN": TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kontainers.cli", "sidecar", "--host", "127.0.0.1", "--port", str(self.port),
             "--root", str(root)],
            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/healthz", timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sidecar did not start:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.05)

    def list(self) -> list[dict]:
        req = urllib.request.Request(f"{self.base}/files?limit=100", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)["data"]


def visible(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".kontainers" not in p.parts)


def test_a_sidecar_killed_mid_upload_leaves_nothing_visible(tmp_path):
    root, log = tmp_path / "data", tmp_path / "sidecar.log"
    sidecar = Sidecar(root, log)
    try:
        kept = urllib.request.Request(
            f"{sidecar.base}/files?name=kept.txt", data=b"kept", method="PUT",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        urllib.request.urlopen(kept, timeout=5).close()
        with socket.create_connection(("127.0.0.1", sidecar.port)) as conn:
            conn.sendall(
                b"PUT /files?name=half.bin HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {TOKEN}\r\nContent-Length: 10000000\r\n\r\n".encode()
                + os.urandom(3_000_000)
            )
            tmp = root / ".kontainers" / "tmp"
            deadline = time.monotonic() + 10
            while not any(p.stat().st_size for p in tmp.iterdir()):
                assert time.monotonic() < deadline, "the upload never reached a temporary file"
                time.sleep(0.02)
            sidecar.proc.send_signal(signal.SIGKILL)
            sidecar.proc.wait(10)
        assert visible(root) == ["kept.txt"]  # the half upload is only a hidden temp file
    finally:
        sidecar.proc.kill()
        sidecar.proc.wait(10)

    restarted = Sidecar(root, log)
    try:
        assert [r["path"] for r in restarted.list()] == ["/mnt/data/kept.txt"]
        assert list((root / ".kontainers" / "tmp").iterdir()) == []  # swept at start
    finally:
        restarted.proc.send_signal(signal.SIGTERM)
        assert restarted.proc.wait(10) == 0


def test_the_sidecar_refuses_to_start_without_a_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTAINERS_SIDECAR_")}
    result = subprocess.run(
        [sys.executable, "-m", "kontainers.cli", "sidecar", "--host", "127.0.0.1", "--port", str(free_port()),
         "--root", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode != 0
    assert "token" in result.stderr


def test_the_token_can_come_from_a_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KONTAINERS_SIDECAR_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kontainers.cli", "sidecar", "--host", "127.0.0.1", "--port", str(port),
         "--root", str(tmp_path / "data"), "--token-file", str(token_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/files", headers={"Authorization": "Bearer from-a-file"})
            try:
                with urllib.request.urlopen(req, timeout=1) as resp:
                    assert resp.status == 200
                break
            except urllib.error.HTTPError:
                raise
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/files", timeout=5)
        assert info.value.code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert b"from-a-file" not in proc.stderr.read()
