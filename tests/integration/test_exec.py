"""`POST /v1/containers/{id}/exec` on the real node: commands really run in the sandbox container.

Through the official SDKs only: `client.post("/containers/{id}/exec", body=…, cast_to=object)` is
the openai SDK's generic call. The sandbox pods run on the real node (containerd + runc); where
this machine runs none, every test here ERRORS (the `real_node` fixture), it is never skipped.
The figures the issue asks for are printed (`-s` shows them); nothing asserts on speed beyond
the timeout's own promise.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from fixtures.gateway import Gateway, Tenant
from fixtures.real_node import Stack
from kontainers.resources import names

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("gateway_logs")]

NODE_DIR = Path(__file__).resolve().parents[1] / "acceptance" / "node"


@pytest.fixture(scope="module")
def tenant(gateway: Gateway, stack: Stack) -> Tenant:
    return gateway.make_tenant("exec")


@pytest.fixture(scope="module")
def container(tenant: Tenant) -> str:
    made = tenant.client.containers.create(name="exec")
    assert made.status == "running", made
    return made.id


def exec_(client, container_id: str, commands: list[str], **options) -> dict:
    return client.post(f"/containers/{container_id}/exec", body={"commands": commands, **options}, cast_to=object)


def pod_name(cluster, namespace: str, container_id: str) -> str:
    pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l",
                                      f"{names.LABEL_CONTAINER_ID}={container_id}", "-o", "json").stdout)["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1
    return live[0]["metadata"]["name"]


# Live processes of the sandbox (zombies are not running: the sandbox's PID 1 does not reap).
PROCESSES = ("for f in /proc/[0-9]*; do s=$(cat $f/stat 2>/dev/null) || continue; s=${s##*) }; "
             "case $s in Z*) continue;; esac; tr '\\0' ' ' < $f/cmdline; echo; done")


def live_processes(client, container_id: str) -> str:
    return exec_(client, container_id, [PROCESSES])["output"][0]["stdout"]


def test_exit_codes_streams_order_cwd_env_and_sdk_types(tenant: Tenant, container: str) -> None:
    from openai.types.responses import ResponseFunctionShellToolCallOutput
    from openai.types.responses.response_input_item_param import ShellCallOutput

    item = exec_(tenant.client, container, [
        "echo out; echo err >&2", "exit 1", "kill -KILL $$", "pwd; id -u", 'printf "%s|%s" "$GREETING" "$HOME"',
        "printf 'h\\303\\251 \\360\\237\\230\\200 \\377\\000end'", "echo 1+1 > order.txt", "cat order.txt",
    ], call_id="call_real", env={"GREETING": "grüß dich"})
    TypeAdapter(ShellCallOutput).validate_python(item)
    ResponseFunctionShellToolCallOutput.model_validate({**item, "id": "sho_real"})
    out = item["output"]
    assert item["call_id"] == "call_real" and len(out) == 8
    assert out[0] == {"stdout": "out\n", "stderr": "err\n", "outcome": {"type": "exit", "exit_code": 0}}
    assert [o["outcome"].get("exit_code") for o in out[1:3]] == [1, 137]
    assert out[3]["stdout"] == "/mnt/data\n10001\n"
    assert out[4]["stdout"] == "grüß dich|/tmp"
    assert out[5]["stdout"] == "hé 😀 \ufffd\x00end"
    assert out[7]["stdout"] == "1+1\n"


def test_timeout_ends_the_call_and_leaves_no_process(tenant: Tenant, container: str) -> None:
    marker = f"kx{uuid.uuid4().hex[:12]}"
    sleeper = f"python3 -c 'import time; time.sleep(60)' {marker}"
    started = time.monotonic()
    item = exec_(tenant.client, container, [f"{sleeper} & sleep 60"], timeout_ms=500)
    elapsed = time.monotonic() - started
    print(f"timeout_ms 500 answered after {elapsed * 1000:.0f} ms")
    assert item["output"][0]["outcome"] == {"type": "timeout"}
    assert elapsed < 1.5
    deadline = time.monotonic() + 5
    while marker in (listing := live_processes(tenant.client, container)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker not in listing and "sleep 60" not in listing, listing


def test_a_finished_commands_background_child_is_cleaned_up(tenant: Tenant, container: str) -> None:
    marker = f"kx{uuid.uuid4().hex[:12]}"
    item = exec_(tenant.client, container,
                 [f"python3 -c 'import time; time.sleep(60)' {marker} >/dev/null 2>&1 & echo forked"])
    assert item["output"][0]["stdout"] == "forked\n"
    assert marker not in live_processes(tenant.client, container)


def test_output_flood_is_truncated_and_the_gateway_stays_flat(gateway: Gateway, tenant: Tenant,
                                                              container: str) -> None:
    before, _ = gateway.rss()
    started = time.monotonic()
    item = exec_(tenant.client, container, ["head -c 200000000 /dev/zero | tr '\\0' y; echo; echo END"],
                 max_output_length=1000)
    elapsed = time.monotonic() - started
    after, peak = gateway.rss()
    stdout = item["output"][0]["stdout"]
    print(f"200 MB flood: {elapsed:.1f} s ({200 / elapsed:.0f} MB/s); gateway RSS {before >> 20} MiB before, "
          f"{after >> 20} MiB after, peak {peak >> 20} MiB")
    assert stdout.startswith("y" * 500) and stdout.endswith("\nEND\n") and "characters truncated" in stdout
    assert len(stdout) < 1100
    assert after - before < 64 << 20


def test_files_written_by_exec_and_uploaded_files_meet(tenant: Tenant, container: str) -> None:
    client = tenant.client
    exec_(client, container, ["echo made by exec > from-exec.txt"])
    files = {f.path: f for f in client.containers.files.list(container)}
    assert files["/mnt/data/from-exec.txt"].source == "assistant"
    client.containers.files.create(container, file=("uploaded.txt", b"uploaded bytes"))
    assert exec_(client, container, ["cat /mnt/data/uploaded.txt"])["output"][0]["stdout"] == "uploaded bytes"


CONNECT = ("python3 -c \"import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3); "
           "print('connected')\" {host} {port}")


def test_disabled_network_reaches_nothing(tenant: Tenant, container: str, stack: Stack) -> None:
    host = stack.real_node.host_ip or "127.0.0.1"
    for port in (stack.https_port, stack.egress.port):
        result = exec_(tenant.client, container, [CONNECT.format(host=host, port=port)])["output"][0]
        assert result["outcome"]["exit_code"] != 0 and "connected" not in result["stdout"]


def test_allowlist_and_domain_secrets_from_exec(tenant: Tenant, stack: Stack) -> None:
    made = tenant.client.containers.create(name="exec-allowlist", network_policy={
        "type": "allowlist", "allowed_domains": ["api.allowed.test", "other.allowed.test"],
        "domain_secrets": [{"domain": "api.allowed.test", "name": "API_TOKEN", "value": "s3cr3t-value"}]})
    port = stack.https_port
    item = exec_(tenant.client, made.id, [
        f"curl -sS --max-time 20 -H \"Authorization: Bearer $API_TOKEN\" https://api.allowed.test:{port}/echo",
        f"curl -sS --max-time 20 https://denied.test:{port}/",
    ], timeout_ms=60_000)
    allowed, refused = item["output"]
    assert allowed["outcome"]["exit_code"] == 0, allowed
    assert json.loads(allowed["stdout"])["path"] == "/echo"
    arrived = [r for r in stack.server.received if r.path == "/echo"]
    assert arrived and arrived[-1].headers.get("Authorization") == "Bearer s3cr3t-value"  # swapped at its domain
    assert refused["outcome"]["exit_code"] != 0 and "403" in refused["stderr"]
    placeholder = exec_(tenant.client, made.id, ['printf %s "$API_TOKEN"'])["output"][0]["stdout"]
    assert placeholder.startswith("KONTAINERS_SECRET_PLACEHOLDER_") and "s3cr3t" not in placeholder


def test_memory_past_the_limit_is_137_and_the_container_keeps_working(tenant: Tenant, container: str) -> None:
    item = exec_(tenant.client, container, ["python3 -c 'b = bytearray(1500 * 1024 * 1024); print(len(b))'",
                                            "echo still here"], timeout_ms=120_000)
    assert item["output"][0]["outcome"] == {"type": "exit", "exit_code": 137}
    assert item["output"][1]["stdout"] == "still here\n"


def test_tenants_and_expired_containers(gateway: Gateway, tenant: Tenant, container: str, cluster) -> None:
    import openai

    other = gateway.make_tenant("exec-other")
    with pytest.raises(openai.NotFoundError):
        exec_(other.client, container, ["true"])
    doomed = tenant.client.containers.create(name="exec-expired")
    name = next(item["metadata"]["name"] for item in json.loads(cluster.kubectl(
        "-n", tenant.namespace, "get", "containers", "-o", "json").stdout)["items"]
        if names.container_id(item["metadata"]["uid"]) == doomed.id)
    cluster.kubectl("-n", tenant.namespace, "patch", "container", name, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"status": "expired"}}))
    deadline = time.monotonic() + 10
    while True:
        try:
            exec_(tenant.client, doomed.id, ["true"])
        except openai.BadRequestError as error:
            assert error.message == "Container is expired." or "Container is expired." in str(error)
            break
        assert time.monotonic() < deadline, "the expired status did not reach the gateway"
        time.sleep(0.2)


def test_concurrent_execs_in_one_and_across_containers(tenant: Tenant, container: str) -> None:
    more = [tenant.client.containers.create(name=f"exec-many-{i}").id for i in range(9)]
    targets = [container] * 20 + [c for c in [container, *more] for _ in range(2)]
    with ThreadPoolExecutor(16) as pool:
        started = time.monotonic()
        results = list(pool.map(lambda cid: exec_(tenant.client, cid, ["echo $$; sleep 0.2; echo done"]), targets))
        elapsed = time.monotonic() - started
    print(f"{len(targets)} concurrent execs over {len(set(targets))} containers in {elapsed:.1f} s")
    for result in results:
        assert result["output"][0]["outcome"] == {"type": "exit", "exit_code": 0}
        assert result["output"][0]["stdout"].endswith("done\n")


async def test_agents_sdk_shell_tool_executor(gateway: Gateway, tenant: Tenant, container: str) -> None:
    from agents import RunContextWrapper, ShellTool
    from agents.tool import ShellActionRequest, ShellCallData, ShellCommandRequest
    from openai import AsyncOpenAI

    from kontainers.shell import shell_executor

    sdk = AsyncOpenAI(base_url=gateway.base_url, api_key=tenant.api_key)
    tool = ShellTool(executor=shell_executor(container, client=sdk))
    result = await tool.executor(ShellCommandRequest(ctx_wrapper=RunContextWrapper(context=None), data=ShellCallData(
        call_id="call_agents", action=ShellActionRequest(commands=["echo agents", "exit 5"]))))
    assert [(o.stdout, o.exit_code) for o in result.output] == [("agents\n", 0), ("", 5)]


def test_node_sdk_runs_one_exec(gateway: Gateway, tenant: Tenant, container: str) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "Node.js and npm are needed for the Node SDK check"
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True,
                       timeout=600)
    script = ("import OpenAI from 'openai'; const c = new OpenAI({baseURL: process.argv[1], apiKey: process.argv[2]});"
              "const r = await c.post(`/containers/${process.argv[3]}/exec`, {body: {commands: ['echo node']}});"
              "console.log(JSON.stringify(r));")
    done = subprocess.run([node, "--input-type=module", "-e", script, gateway.base_url, tenant.api_key, container],
                          cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["output"][0]["stdout"] == "node\n"


def test_figures_latency_stream_and_throughput(gateway: Gateway, tenant: Tenant, container: str, cluster) -> None:
    """Round trip of `true` (serial 50) next to `kubectl exec` on the same pod; stream first byte and rate."""
    import httpx

    def timed(call) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    ours = sorted(timed(lambda: exec_(tenant.client, container, ["true"])) for _ in range(50))
    pod = pod_name(cluster, tenant.namespace, container)
    kubectl = sorted(timed(lambda: cluster.kubectl("-n", tenant.namespace, "exec", pod, "-c", "sandbox", "--", "true"))
                     for _ in range(50))

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p * len(values)))] * 1000

    print(f"exec `true`: p50 {pct(ours, .5):.0f} ms, p99 {pct(ours, .99):.0f} ms; kubectl exec: p50 "
          f"{pct(kubectl, .5):.0f} ms, p99 {pct(kubectl, .99):.0f} ms; ratio p50 "
          f"{statistics.median(ours) / statistics.median(kubectl):.2f}")
    url = f"{gateway.base_url}/containers/{container}/exec"
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    body = {"commands": ["echo first; head -c 100000000 /dev/zero | tr '\\0' z"], "stream": True,
            "max_output_length": 1000}
    started = time.perf_counter()
    first = None
    received = 0
    with httpx.stream("POST", url, json=body, headers=headers, timeout=300) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            first = first or time.perf_counter() - started
            received += len(chunk)
    total = time.perf_counter() - started
    _, peak = gateway.rss()
    print(f"stream: first byte after {first * 1000:.0f} ms; 100 MB of stdout through it in {total:.1f} s "
          f"({100 / total:.0f} MB/s), {received} bytes of events; gateway peak RSS {peak >> 20} MiB")
