"""The dev node agent's pure parts: which pods get a sidecar, and children that die with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from kubernetes_asyncio import client

from kontainers.cluster.nodeagent import desired_sidecar
from kontainers.resources import names


def pod(*, phase="Running", ip="127.66.0.7", env=None, deleting=False, container="files",
        gates=()) -> client.V1Pod:
    if env is None:
        env = [client.V1EnvVar(
            name="KONTAINERS_SIDECAR_TOKEN",
            value_from=client.V1EnvVarSource(secret_key_ref=client.V1SecretKeySelector(name="s", key="token")),
        )]
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name="p", namespace="ns", uid="u1",
                                     deletion_timestamp="2026-01-01T00:00:00Z" if deleting else None),
        spec=client.V1PodSpec(containers=[client.V1Container(name="sandbox"), client.V1Container(name=container, env=env)],
                              readiness_gates=[client.V1PodReadinessGate(condition_type=g) for g in gates] or None),
        status=client.V1PodStatus(phase=phase, pod_ip=ip),
    )


def test_a_running_pod_with_an_ip_wants_a_sidecar_with_its_secret():
    want = desired_sidecar(pod())
    assert (want.namespace, want.pod, want.uid, want.ip) == ("ns", "p", "u1", "127.66.0.7")
    assert (want.secret_name, want.secret_key, want.literal_token) == ("s", "token", None)
    assert not want.gated and desired_sidecar(pod(gates=[names.CONDITION_SIDECAR_READY])).gated


def test_pods_not_running_without_ip_deleting_or_without_files_container_want_none():
    assert desired_sidecar(pod(phase="Pending")) is None
    assert desired_sidecar(pod(ip=None)) is None
    assert desired_sidecar(pod(deleting=True)) is None
    assert desired_sidecar(pod(container="other")) is None
    assert desired_sidecar(pod(env=[client.V1EnvVar(name="UNRELATED", value="x")])) is None


def test_a_real_nodes_pod_runs_its_own_sidecar():
    assert desired_sidecar(pod(ip="10.234.0.9")) is None


def test_a_literal_token_is_used_but_never_shown():
    want = desired_sidecar(pod(env=[client.V1EnvVar(name="KONTAINERS_SIDECAR_TOKEN", value="s3cret")]))
    assert want.literal_token == "s3cret" and want.secret_name is None
    assert "s3cret" not in repr(want) and "s3cret" not in str(want)


def test_children_die_with_the_process_that_started_them(tmp_path):
    # A parent starts a sidecar through kontainers_command, then is SIGKILLed without cleanup.
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import os, subprocess, sys, time
            from kontainers.cluster.nodeagent import kontainers_command
            env = {{**os.environ, "KONTAINERS_SIDECAR_TOKEN": "t"}}
            child = subprocess.Popen(kontainers_command("sidecar", "--host", "127.0.0.1", "--port", "0",
                                                        "--root", {str(tmp_path / "data")!r}), env=env)
            print(child.pid, flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    child_pid = int(parent.stdout.readline())
    time.sleep(1.0)  # let the child get past its bootstrap
    assert _alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + 15
    while _alive(child_pid):
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
