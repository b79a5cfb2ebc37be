"""`kontainers dev` end to end: start it, use the openai SDK from DIR/env, SIGTERM, nothing left."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest

pytestmark = pytest.mark.cluster

READY_TIMEOUT = 300  # includes building the control plane binaries on a cold machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unused_pod_cidrs(count: int = 1) -> list[str]:
    """127.N.0.0/16 ranges no `kontainers dev` or test session holds now (dev takes their locks)."""
    from kontainers.cluster.launcher import hold_pod_cidr
    from kontainers.cluster.process import LockBusy

    found = []
    for octet in range(128, 200):
        try:
            hold_pod_cidr(f"127.{octet}.0.0/16", "a probe of test_dev").close()
        except LockBusy:
            continue
        found.append(f"127.{octet}.0.0/16")
        if len(found) == count:
            return found
    raise RuntimeError("not enough free pod CIDRs in 127.128-127.199")


def unused_pod_cidr() -> str:
    return unused_pod_cidrs(1)[0]


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        values[name] = shlex.split(value)[0] if value else ""
    return values


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (whatever session it moved to)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, pending = set(), [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def test_kontainers_dev_serves_the_openai_sdk_and_stops_cleanly(tmp_path):
    state = tmp_path / "dev"
    output = tmp_path / "dev.out"
    # A free sidecar port: other control planes on this machine may hand out the same pod IPs.
    # Fake nodes: the test session's cluster holds this host's one real node.
    command = [sys.executable, "-m", "kontainers.cli", "dev", "--state-dir", str(state), "--port", "0",
               "--sidecar-port", str(free_port()), "--fake-nodes", "--pod-cidr", unused_pod_cidr()]
    with output.open("wb") as out:
        dev = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)

    def diagnostics() -> str:
        return "\n".join(f"--- {p}\n{tail(p)}" for p in [output, *sorted((state / "logs").glob("*.log"))])

    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not (state / "env").exists():
            assert dev.poll() is None, f"kontainers dev exited ({dev.returncode}):\n{diagnostics()}"
            assert time.monotonic() < deadline, f"DIR/env never appeared:\n{diagnostics()}"
            time.sleep(0.5)
        env = read_env(state / "env")
        assert set(env) == {"OPENAI_BASE_URL", "OPENAI_API_KEY", "KUBECONFIG"}
        assert env["OPENAI_BASE_URL"].startswith("http://127.0.0.1:") and env["OPENAI_BASE_URL"].endswith("/v1")
        assert Path(env["KUBECONFIG"]) == state / "kubeconfig" and (state / "kubeconfig").is_file()
        printed = output.read_text()
        assert "kontainers dev is ready" in printed
        metrics_url = printed.split("gateway metrics (no key): ", 1)[1].split()[0]
        with urllib.request.urlopen(metrics_url, timeout=10) as reply:
            assert b"kontainers_http_requests_total" in reply.read()

        client = openai.OpenAI(base_url=env["OPENAI_BASE_URL"], api_key=env["OPENAI_API_KEY"])
        try:
            container = client.containers.create(name="dev-smoke")
            assert container.id.startswith("cntr_")
            data = os.urandom(2 * 1024 * 1024 + 3)
            uploaded = client.containers.files.create(container.id, file=("blob.bin", data))
            assert uploaded.path == "/mnt/data/blob.bin" and uploaded.bytes == len(data)
            content = client.containers.files.content.retrieve(uploaded.id, container_id=container.id)
            assert content.read() == data
            listed = [f.id for f in client.containers.files.list(container.id)]
            assert listed == [uploaded.id]
        except Exception as error:
            raise AssertionError(f"{error}\n{diagnostics()}") from error
        finally:
            client.close()
        assert env["OPENAI_API_KEY"] not in diagnostics()  # the key is never logged

        processes = descendants(dev.pid)
        assert len(processes) >= 8  # control plane, operator, gateway, a sidecar
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(90) == 0, diagnostics()
        deadline = time.monotonic() + 10
        while left := [p for p in processes if alive(p)]:
            assert time.monotonic() < deadline, f"processes left behind: {left}"
            time.sleep(0.1)
        assert not (state / "env").exists()
    finally:
        if dev.poll() is None:
            dev.send_signal(signal.SIGTERM)
            try:
                dev.wait(60)
            except subprocess.TimeoutExpired:
                dev.kill()


def test_kontainers_dev_with_its_port_taken_fails_at_once_and_starts_nothing(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "kontainers.cli", "dev", "--state-dir", str(tmp_path / "dev"),
                               "--port", str(port), "--fake-nodes", "--pod-cidr", unused_pod_cidr()],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"port {port} on 127.0.0.1 is taken" in done.stderr and "pass --port with a free port" in done.stderr
    assert not (tmp_path / "dev" / "cluster").exists() and not (tmp_path / "dev" / "env").exists()


def test_two_instances_on_fake_nodes_coexist(tmp_path):
    # Same sidecar port on both: their pod ranges differ, so their sidecars never share an address.
    runs = []
    for index, pod_cidr in enumerate(unused_pod_cidrs(2)):
        state, output = tmp_path / f"dev{index}", tmp_path / f"dev{index}.out"
        with output.open("wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "kontainers.cli", "dev", "--state-dir", str(state),
                                        "--port", str(free_port()), "--fake-nodes", "--pod-cidr", pod_cidr],
                                       stdout=out, stderr=subprocess.STDOUT)
        runs.append((process, state, output))

    def diagnostics() -> str:
        return "\n".join(f"--- {p}\n{tail(p)}" for _, state, output in runs
                         for p in [output, *sorted((state / "logs").glob("*.log"))])

    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not all((state / "env").exists() for _, state, _ in runs):
            assert all(p.poll() is None for p, _, _ in runs), f"an instance exited:\n{diagnostics()}"
            assert time.monotonic() < deadline, f"DIR/env never appeared:\n{diagnostics()}"
            time.sleep(0.5)
        envs = [read_env(state / "env") for _, state, _ in runs]
        assert envs[0]["OPENAI_BASE_URL"] != envs[1]["OPENAI_BASE_URL"]
        for index, env in enumerate(envs):
            # No retries: `running` waits for the node agent's sidecar (the readiness gate), so
            # the file calls right after it must not meet a 503.
            client = openai.OpenAI(base_url=env["OPENAI_BASE_URL"], api_key=env["OPENAI_API_KEY"], max_retries=0)
            try:
                container = client.containers.create(name=f"twin-{index}")
                assert container.status == "running"
                client.containers.files.create(container.id, file=("who.txt", f"instance {index}".encode()))
                (listed,) = list(client.containers.files.list(container.id))
                content = client.containers.files.content.retrieve(listed.id, container_id=container.id)
                assert content.read() == f"instance {index}".encode()
                # Each instance sees its own containers only: they are two clusters.
                assert [c.name for c in client.containers.list()] == [f"twin-{index}"]
            except Exception as error:
                raise AssertionError(f"instance {index}: {error}\n{diagnostics()}") from error
            finally:
                client.close()
    finally:
        for process, _, _ in runs:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _, _ in runs:
            try:
                assert process.wait(90) == 0, diagnostics()
            except subprocess.TimeoutExpired:
                process.kill()
                raise
