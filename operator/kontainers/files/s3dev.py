"""A real S3-compatible server on loopback for tests, benchmarks and local runs (never production).

It is versitygw (its `posix` backend: objects are plain files under a directory), built from the
pinned Go module like the control plane's binaries (`kontainers.cluster.pins`). It speaks the S3
wire protocol with SigV4 and multipart uploads, so the S3 backend is tested against a real server,
not a stub.

    with LocalS3Server(tmp_path) as s3:
        store = S3Store("bucket", endpoint_url=s3.endpoint_url, access_key_id=s3.access_key, …)
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

BINARY = "versitygw"


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_binary(bin_dir: Path | None = None) -> Path:
    """The versitygw binary: from `bin_dir`, else built (if missing) into the pinned binary dir."""
    if bin_dir is not None and (bin_dir / BINARY).is_file():
        return bin_dir / BINARY
    from kontainers.cluster import build

    return build.ensure_built() / BINARY


class LocalS3Server:
    """versitygw serving `state_dir/data` on 127.0.0.1:<free port>; log in `state_dir/versitygw.log`."""

    def __init__(self, state_dir: Path, *, bin_dir: Path | None = None, port: int | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.bin_dir = bin_dir
        self.port = port or free_loopback_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.region = "us-east-1"
        # Throwaway credentials of a throwaway server; passed by env so `ps` does not show them.
        self.access_key = "kontainers" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(20)
        self.log_path = self.state_dir / "versitygw.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> "LocalS3Server":
        binary = ensure_binary(self.bin_dir)
        data, meta = self.state_dir / "data", self.state_dir / "meta"
        data.mkdir(parents=True, exist_ok=True)
        meta.mkdir(parents=True, exist_ok=True)
        env = dict(
            os.environ,
            ROOT_ACCESS_KEY_ID=self.access_key,
            ROOT_SECRET_ACCESS_KEY=self.secret_key,
            VGW_REGION=self.region,
        )
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                # Metadata in a side directory rather than xattrs: works on any filesystem.
                [str(binary), "--port", f"127.0.0.1:{self.port}", "posix", "--sidecar", str(meta), str(data)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"versitygw exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                # Unauthenticated: any HTTP answer (403) means the server is listening.
                urllib.request.urlopen(self.endpoint_url, timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"versitygw did not answer within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> "LocalS3Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
