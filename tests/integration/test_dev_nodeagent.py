"""The dev node agent against the real control plane: a Running kontainers pod gets a real sidecar."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time

import aiohttp
import pytest

from kontainers.cluster.nodeagent import RESYNC_SECONDS, DevNodeAgent

pytestmark = pytest.mark.cluster

TOKEN = "agent-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pod_manifest(name: str, secret: str, managed: bool = True) -> dict:
    """A pod shaped like the operator's: a `files` container whose token comes from a Secret."""
    hardened = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    labels = {"app.kubernetes.io/managed-by": "kontainers"} if managed else {"app": "other"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [
                {"name": "sandbox", "image": "python:3.12-slim", "securityContext": hardened},
                {
                    "name": "files",
                    "image": "kontainers:dev",
                    "args": ["sidecar"],
                    "env": [{"name": "KONTAINERS_SIDECAR_TOKEN",
                             "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}}],
                    "securityContext": hardened,
                },
            ]
        },
    }


def apply(cluster, namespace: str, manifest: dict) -> None:
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))


def pod_ip(cluster, namespace: str, name: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.kubectl("-n", namespace, "get", "pod", name, "-o", "json").stdout
        status = json.loads(out).get("status", {})
        if status.get("phase") == "Running" and status.get("podIP"):
            return status["podIP"]
        time.sleep(0.2)
    raise AssertionError(f"pod {namespace}/{name} never became Running with an IP")


async def test_a_running_pod_gets_a_sidecar_that_goes_with_the_pod(cluster, namespace, tmp_path):
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "files-token", f"--from-literal=token={TOKEN}")
    apply(cluster, namespace, pod_manifest("box", "files-token"))
    apply(cluster, namespace, pod_manifest("unmanaged", "files-token", managed=False))
    ip = pod_ip(cluster, namespace, "box")
    assert ip.startswith("127.")
    port = free_port()  # not 8081: other sessions on this machine may reuse the same pod IPs

    agent = DevNodeAgent(cluster.kubeconfig, tmp_path / "agent", sidecar_port=port)
    async with agent:
        sidecar = await agent.wait_for_sidecar(namespace, "box")
        assert sidecar.url == f"http://{ip}:{port}"
        assert agent.sidecar(namespace, "unmanaged") is None
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{sidecar.url}/files") as resp:
                assert resp.status == 401
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with http.put(f"{sidecar.url}/files", params={"name": "hello.txt"}, data=b"hi", headers=auth) as resp:
                assert resp.status == 201, await resp.text()
        assert (agent.data_dir(namespace, "box") / "hello.txt").read_bytes() == b"hi"
        log_text = (agent.pod_dir(namespace, "box") / "sidecar.log").read_text()
        assert TOKEN not in log_text

        pid = sidecar.component.pid
        cluster.kubectl("-n", namespace, "delete", "pod", "box", "--wait=true", "--timeout=60s")
        deadline = time.monotonic() + 30
        while agent.sidecar(namespace, "box") is not None or agent.pod_dir(namespace, "box").exists():
            assert time.monotonic() < deadline, "the sidecar outlived its pod"
            await asyncio.sleep(0.1)
        assert not _alive(pid)

        # a crashed sidecar is restarted
        apply(cluster, namespace, pod_manifest("box2", "files-token"))
        first = await agent.wait_for_sidecar(namespace, "box2")
        first.component.process.kill()
        deadline = time.monotonic() + 30
        while True:
            again = agent.sidecar(namespace, "box2")
            if again is not None and again is not first and again.ready.is_set():
                break
            assert time.monotonic() < deadline, "a crashed sidecar was not restarted"
            await asyncio.sleep(0.1)
        pids = agent.pids()
    assert pids and not any(_alive(p) for p in pids)


async def test_a_pod_whose_secret_appears_later_gets_its_sidecar(cluster, namespace, tmp_path):
    apply(cluster, namespace, pod_manifest("late", "late-token"))
    pod_ip(cluster, namespace, "late")
    async with DevNodeAgent(cluster.kubeconfig, tmp_path / "agent", sidecar_port=free_port()) as agent:
        await asyncio.sleep(1.5)
        assert agent.sidecar(namespace, "late") is None
        cluster.kubectl("-n", namespace, "create", "secret", "generic", "late-token", "--from-literal=token=t")
        await agent.wait_for_sidecar(namespace, "late")


async def test_a_pod_running_before_the_agent_starts_gets_exactly_one_sidecar(cluster, namespace, tmp_path):
    # start() reconciles the listed pods while its watch loop wakes up for the same list: the two
    # must not both launch a sidecar (the second cannot bind the IP, the first would be orphaned).
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "files-token", f"--from-literal=token={TOKEN}")
    apply(cluster, namespace, pod_manifest("early", "files-token"))
    pod_ip(cluster, namespace, "early")
    agent = DevNodeAgent(cluster.kubeconfig, tmp_path / "agent", sidecar_port=free_port())
    async with agent:
        first = await agent.wait_for_sidecar(namespace, "early")
        await asyncio.sleep(2 * RESYNC_SECONDS + 0.5)  # long enough for a crash-restart to show
        assert agent.sidecar(namespace, "early") is first
        launches = (agent.pod_dir(namespace, "early") / "sidecar.log").read_text().count("### ")
        assert launches == 1, f"{launches} sidecars were launched for one pod"
    assert not _alive(first.component.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"
