"""`kontainers dev` checks before it starts anything, and believes only its own processes are ready:
taken ports, a busy state dir, real node or pod range fail fast naming the flag to change; a
foreign server answering a readiness URL is an error, never "ready". No cluster is started."""

from __future__ import annotations

import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from kontainers.cluster import dev, launcher, node
from kontainers.cluster.process import Component, free_port, hold_lock

# A pod range of its own per test process, above the test sessions' 127.70-127.127.
POD_CIDR = f"127.{200 + os.getpid() % 50}.0.0/16"


@pytest.fixture(autouse=True)
def private_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real node's and the pod ranges' locks of this machine stay untouched."""
    monkeypatch.setattr(node, "HOST_LOCK", tmp_path / "locks" / "real-node.lock")
    monkeypatch.setattr(launcher, "POD_CIDR_LOCKS", tmp_path / "locks" / "pod-cidrs")

    def no_control_plane(*args: object, **kwargs: object) -> None:
        raise AssertionError("the control plane must not be started")

    monkeypatch.setattr(dev, "ControlPlane", no_control_plane)


def dev_args(state_dir: Path, *extra: str) -> list[str]:
    return ["--state-dir", str(state_dir), "--port", "0", "--fake-nodes", "--pod-cidr", POD_CIDR,
            "--sidecar-port", str(free_port()), *extra]


def listening(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    server = socket.socket()
    server.bind((host, port))
    server.listen()
    return server


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = dev.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--port", "--metrics-port"])
def test_a_taken_port_fails_before_anything_starts_naming_it_and_its_flag(tmp_path, capsys, flag):
    with listening() as taken:
        port = taken.getsockname()[1]
        state = tmp_path / "dev"
        code, err = run_main([*dev_args(state), flag, str(port)], capsys)
    assert code == 1
    assert f"port {port} on 127.0.0.1 is taken" in err and f"pass {flag} with a free port" in err
    assert f"pid {os.getpid()}" in err  # who holds it
    assert not (state / "cluster").exists()


def test_a_server_on_the_pod_addresses_sidecar_port_is_found_before_start(tmp_path, capsys):
    pod_ip = node.node_ip(launcher.node_cidrs(POD_CIDR, 1)[0])
    with listening(pod_ip) as taken:
        port = taken.getsockname()[1]
        code, err = run_main([*dev_args(tmp_path / "dev"), "--sidecar-port", str(port)], capsys)
    assert code == 1 and f"port {port} on {pod_ip} is taken" in err and "--sidecar-port" in err


def test_a_second_instance_on_the_same_state_dir_stops_and_leaves_the_first_ones_files(tmp_path, capsys):
    state = tmp_path / "dev"
    state.mkdir()
    (state / "env").write_text("OPENAI_BASE_URL=http://127.0.0.1:8080/v1\n")
    first = hold_lock(state / "dev.lock", "pid 4242, state dir first")
    try:
        code, err = run_main(dev_args(state), capsys)
    finally:
        first.close()
    assert code == 1 and "another kontainers dev uses" in err and "pid 4242" in err and "--state-dir" in err
    assert (state / "env").is_file(), "the running instance's DIR/env must survive"


def test_a_second_real_node_says_so_and_stops_before_touching_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(node, "unavailable_reason", lambda check_lock=True: None)  # this machine could run one
    first = hold_lock(node.HOST_LOCK, "pid 4242, state dir /srv/first/cluster/node")
    try:
        state = tmp_path / "dev"
        argv = [a for a in dev_args(state) if a != "--fake-nodes"]
        code, err = run_main(argv, capsys)
    finally:
        first.close()
    assert code == 1
    assert "a real node already runs on this machine (pid 4242, state dir /srv/first/cluster/node)" in err
    assert "--fake-nodes" in err
    assert sorted(p.name for p in state.iterdir()) == ["dev.lock"]  # nothing else written
    # Its state-dir lock went with it: a later run may use DIR.
    hold_lock(state / "dev.lock", "next").close()


def test_two_instances_on_kwok_need_distinct_pod_ranges(tmp_path):
    first = dev.preflight(dev.parse_args(dev_args(tmp_path / "a")))
    try:
        with pytest.raises(dev.DevError, match=r"pod address range .* is in use \(pid \d+, state dir .*a\).*--pod-cidr"):
            dev.preflight(dev.parse_args(dev_args(tmp_path / "b")))
        other = POD_CIDR.replace(".0.0/16", "").rsplit(".", 1)[1]
        second = dev.preflight(dev.parse_args([*dev_args(tmp_path / "b"), "--pod-cidr", f"127.{int(other) + 1}.0.0/16"]))
        second.release()
    finally:
        first.release()


def test_a_pod_range_off_loopback_is_refused(tmp_path, capsys):
    code, err = run_main([*dev_args(tmp_path / "dev"), "--pod-cidr", "10.66.0.0/16"], capsys)
    assert code == 1 and "127.N.0.0/16" in err


# --- readiness: the answering server must be the one this run started -------------------------


class Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def stack(tmp_path: Path) -> dev.DevStack:
    args = SimpleNamespace(state_dir=tmp_path, port=0, metrics_port=0)
    return dev.DevStack(args, SimpleNamespace(kubeconfig=tmp_path / "kubeconfig", components=[]))


SERVE_READY = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def child(tmp_path: Path, *argv: str) -> Component:
    process = Component("child", list(argv), tmp_path / "child.log")
    process.start()
    return process


async def test_readiness_answered_by_a_foreign_server_is_not_accepted(tmp_path):
    foreign = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    port = foreign.server_address[1]
    ours = child(tmp_path, sys.executable, "-c", "import time; time.sleep(60)")  # alive, never listening
    try:
        with pytest.raises(dev.DevError) as raised:
            await stack(tmp_path)._wait_ready(f"http://127.0.0.1:{port}/readyz", "gateway", ours, "--port", timeout=10)
        message = str(raised.value)
        assert f"is answered by another program (pid {os.getpid()}" in message
        assert f"not by the gateway this run started (pid {ours.pid})" in message and "--port" in message
    finally:
        ours.stop()
        foreign.shutdown()
        foreign.server_close()


async def test_a_child_that_dies_on_a_taken_port_is_an_error_not_ready(tmp_path):
    foreign = ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    port = foreign.server_address[1]
    ours = child(tmp_path, sys.executable, "-c", SERVE_READY, str(port))  # exits: address already in use
    try:
        dead = stack(tmp_path)
        dead.components.append(ours)
        ours.process.wait(30)
        with pytest.raises(dev.DevError, match=r"(?s)child exited \(1\).*Address already in use"):
            await dead._wait_ready(f"http://127.0.0.1:{port}/readyz", "gateway", ours, "--port", timeout=10)
    finally:
        ours.stop()
        foreign.shutdown()
        foreign.server_close()


async def test_readiness_of_the_started_process_itself_is_accepted(tmp_path):
    port = free_port()
    ours = child(tmp_path, sys.executable, "-c", SERVE_READY, str(port))
    try:
        await stack(tmp_path)._wait_ready(f"http://127.0.0.1:{port}/readyz", "gateway", ours, "--port", timeout=30)
        assert ours.listens_on("127.0.0.1", port)
        assert not ours.listens_on("127.0.0.1", free_port())
    finally:
        ours.stop()
