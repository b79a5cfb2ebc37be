"""`POST /v1/containers/{id}/exec` on a FakeCluster: body validation, errors, the reply's SDK types, SSE."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter

from fixtures.exec_fakes import POD_NAME, LocalExec, Scripted, ScriptedExec, run_with_pod, start_exec_client
from fixtures.gateway_fake import FakeCluster
from kontainers.gateway.exec_runner import ExecFailed, ExecUnavailable

KEY = "sk-exec"
OTHER = "sk-other"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def cluster() -> FakeCluster:
    fake = FakeCluster()
    fake.add_key(KEY, "exec-tenant")
    fake.add_key(OTHER, "other-tenant")
    fake.operator = run_with_pod(fake)
    return fake


@pytest.fixture
async def local(cluster, tmp_path):
    transport = LocalExec()
    client = await start_exec_client(cluster, transport, state_dir=tmp_path / "state")
    yield client, transport
    await client.close()


def echo_script(command: str) -> Scripted:
    if command.startswith("fail:"):
        return Scripted(error=ExecFailed("exec: /bin/sh: not found"))
    if command == "gone":
        return Scripted(error=ExecUnavailable("HTTP 404"))
    return Scripted(chunks=[(1, b"o1 "), (2, b"e1"), (1, command.encode())], exit_code=len(command) % 3)


@pytest.fixture
async def scripted(cluster):
    transport = ScriptedExec(echo_script)
    client = await start_exec_client(cluster, transport)
    yield client, transport
    await client.close()


async def new_container(client) -> str:
    response = await client.post("/v1/containers", json={"name": "exec"}, headers=AUTH)
    assert response.status == 200, await response.text()
    return (await response.json())["id"]


async def exec_(client, container_id: str, body: object, headers=None):
    return await client.post(f"/v1/containers/{container_id}/exec", json=body, headers=headers or AUTH)


async def error_of(response, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return (await response.json())["error"]


async def test_reply_is_a_shell_call_output_the_sdk_accepts(local, tmp_path) -> None:
    from openai.types.responses import ResponseFunctionShellToolCallOutput
    from openai.types.responses.response_input_item_param import ShellCallOutput
    from openai.types.responses.response_input_param import ResponseInputParam

    client, transport = local
    cid = await new_container(client)
    response = await exec_(client, cid, {"commands": ["echo hi; echo err >&2", "exit 4"], "call_id": "call_abc",
                                          "max_output_length": 100, "workdir": str(tmp_path)})
    assert response.status == 200, await response.text()
    item = await response.json()
    assert item == {"type": "shell_call_output", "call_id": "call_abc", "max_output_length": 100,
                    "status": "completed", "output": [
                        {"stdout": "hi\n", "stderr": "err\n", "outcome": {"type": "exit", "exit_code": 0}},
                        {"stdout": "", "stderr": "", "outcome": {"type": "exit", "exit_code": 4}}]}
    TypeAdapter(ShellCallOutput).validate_python(item)
    TypeAdapter(ResponseInputParam).validate_python([item])  # appendable to `input` as it is
    ResponseFunctionShellToolCallOutput.model_validate({**item, "id": "sho_1"})
    assert transport.pods == [("exec-tenant", POD_NAME, "sandbox")] * 2
    assert transport.calls[0][:2] == ["/bin/sh", "-c"]


async def test_defaults_call_id_and_workdir(scripted) -> None:
    client, transport = scripted
    cid = await new_container(client)
    item = await (await exec_(client, cid, {"commands": ["x"]})).json()
    assert item["call_id"].startswith("call_") and "max_output_length" not in item
    assert item["output"] == [{"stdout": "o1 x", "stderr": "e1", "outcome": {"type": "exit", "exit_code": 1}}]


@pytest.mark.parametrize("body, param", [
    ({}, "commands"),
    ({"commands": []}, "commands"),
    ({"commands": "ls"}, "commands"),
    ({"commands": [1]}, "commands[0]"),
    ({"commands": ["a\x00b"]}, "commands"),
    ({"commands": ["ls"] * 65}, "commands"),
    ({"commands": ["x" * 300_000]}, "commands"),
    ({"commands": ["ls"], "timeout_ms": 0}, "timeout_ms"),
    ({"commands": ["ls"], "timeout_ms": "10"}, "timeout_ms"),
    ({"commands": ["ls"], "max_output_length": -1}, "max_output_length"),
    ({"commands": ["ls"], "env": {"1BAD": "x"}}, "env"),
    ({"commands": ["ls"], "env": {"A": 1}}, "env.A"),
    ({"commands": ["ls"], "workdir": "relative"}, "workdir"),
    ({"commands": ["ls"], "stream": "yes"}, "stream"),
    ({"commands": ["ls"], "cwd": "/"}, "cwd"),
])
async def test_bad_bodies_are_400_naming_the_field(scripted, body, param) -> None:
    client, transport = scripted
    cid = await new_container(client)
    error = await error_of(await exec_(client, cid, body), 400)
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert transport.commands == []


async def test_not_json_is_400(scripted) -> None:
    client, _ = scripted
    cid = await new_container(client)
    response = await client.post(f"/v1/containers/{cid}/exec", data=b"nope", headers=AUTH)
    await error_of(response, 400)


async def test_other_tenants_and_unknown_ids_are_404(scripted) -> None:
    client, transport = scripted
    cid = await new_container(client)
    for container_id, key in ((cid, OTHER), ("cntr_" + "0" * 48, KEY)):
        response = await exec_(client, container_id, {"commands": ["ls"]}, {"Authorization": f"Bearer {key}"})
        error = await error_of(response, 404)
        assert error["param"] == "container_id"
    assert transport.commands == []


async def test_expired_is_400_and_starting_is_503(scripted, cluster) -> None:
    client, transport = scripted
    cid = await new_container(client)
    (namespace, name), = [key for key in cluster.objects]
    cluster.set_status(namespace, name, status="pending", podIP=None, podName=None)
    response = await exec_(client, cid, {"commands": ["ls"]})
    error = await error_of(response, 503)
    assert response.headers["Retry-After"] and error["code"] == "container_not_ready"
    cluster.set_status(namespace, name, status="expired")
    error = await error_of(await exec_(client, cid, {"commands": ["ls"]}), 400)
    assert error["message"] == "Container is expired."
    assert transport.commands == []


async def test_unreachable_pod_before_any_command_is_a_retryable_503(scripted) -> None:
    client, _ = scripted
    cid = await new_container(client)
    response = await exec_(client, cid, {"commands": ["gone", "x"]})
    await error_of(response, 503)
    assert "x-should-retry" not in response.headers


async def test_failure_after_a_command_ran_is_not_retried(scripted) -> None:
    client, transport = scripted
    cid = await new_container(client)
    response = await exec_(client, cid, {"commands": ["x", "gone"]})
    await error_of(response, 502)
    assert response.headers["x-should-retry"] == "false"
    response = await exec_(client, cid, {"commands": ["fail:sh"]})
    error = await error_of(response, 502)
    assert "/bin/sh: not found" in error["message"] and response.headers["x-should-retry"] == "false"


async def test_exec_counts_as_activity(scripted, cluster) -> None:
    client, _ = scripted
    cid = await new_container(client)
    cluster.annotations_written.clear()
    assert (await exec_(client, cid, {"commands": ["x"]})).status == 200
    import asyncio

    await asyncio.sleep(0.05)
    assert any("kontainers.dev/last-active-at" in a for _, _, a in cluster.annotations_written)


def parse_sse(raw: str) -> list[tuple[str, dict]]:
    events = []
    assert raw.endswith("\n\n")
    for block in raw.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ") and len(lines) == 2, block
        data = json.loads(lines[1][len("data: "):])
        assert data["type"] == lines[0][len("event: "):]
        events.append((data["type"], data))
    return events


async def test_stream_events_are_framed_ordered_and_end_with_the_item(scripted) -> None:
    client, _ = scripted
    cid = await new_container(client)
    response = await exec_(client, cid, {"commands": ["a", "bb"], "stream": True, "call_id": "call_s"})
    assert response.status == 200 and response.content_type == "text/event-stream"
    events = parse_sse(await response.text())
    assert [e["sequence_number"] for _, e in events] == list(range(len(events)))
    kinds = [(kind.rsplit(".", 1)[-1], e.get("command_index")) for kind, e in events]
    assert kinds == [("delta", 0)] * 3 + [("done", 0)] + [("delta", 1)] * 3 + [("done", 1), ("done", None)]
    assert events[0][1]["delta"] == {"stdout": "o1 "} and events[1][1]["delta"] == {"stderr": "e1"}
    item_ids = {e["item_id"] for _, e in events[:-1]}
    assert len(item_ids) == 1 and item_ids.pop().startswith("exec_")
    last = events[-1][1]
    assert last["type"] == "response.output_item.done" and last["item"]["call_id"] == "call_s"
    assert last["item"]["output"][1] == {"stdout": "o1 bb", "stderr": "e1", "outcome": {"type": "exit", "exit_code": 2}}
    assert events[3][1]["output"] == [last["item"]["output"][0]]


async def test_stream_events_match_the_sdk_event_types(local, tmp_path) -> None:
    """The Responses API's own event models, where this SDK has them (openai ≥ 2.x with shell events)."""
    import openai.types.responses as types

    client, _ = local
    cid = await new_container(client)
    response = await exec_(client, cid, {"commands": ["echo x; echo y >&2"], "stream": True,
                                          "workdir": str(tmp_path)})
    events = parse_sse(await response.text())
    delta_type = getattr(types, "ResponseShellCallOutputContentDeltaEvent", None)
    done_type = getattr(types, "ResponseShellCallOutputContentDoneEvent", None)
    from kontainers.api.shell import ShellCallOutputContentDeltaEvent, ShellCallOutputContentDoneEvent

    for kind, data in events:
        if kind.endswith("content.delta"):
            (delta_type or ShellCallOutputContentDeltaEvent).model_validate(data)
        elif kind.endswith("content.done"):
            (done_type or ShellCallOutputContentDoneEvent).model_validate(data)
    deltas = "".join(d["delta"].get("stdout", "") for k, d in events if k.endswith("delta"))
    assert deltas == "x\n" == events[-1][1]["item"]["output"][0]["stdout"]


async def test_stream_failure_before_output_is_json_and_after_is_an_error_event(scripted) -> None:
    client, _ = scripted
    cid = await new_container(client)
    await error_of(await exec_(client, cid, {"commands": ["gone"], "stream": True}), 503)
    response = await exec_(client, cid, {"commands": ["x", "fail:sh"], "stream": True})
    assert response.status == 200
    events = parse_sse(await response.text())
    assert events[-1][0] == "error" and "/bin/sh" in events[-1][1]["message"]
    assert events[-1][1]["code"] == "exec_failed"


async def test_timeout_ms_and_max_output_length_are_capped(cluster, tmp_path) -> None:
    seen = []

    def script(command: str) -> Scripted:
        seen.append(command)
        return Scripted(chunks=[(1, b"x" * 100)])

    client = await start_exec_client(cluster, ScriptedExec(script), exec_max_output_length=10,
                                     exec_max_timeout_ms=50)
    try:
        cid = await new_container(client)
        item = await (await exec_(client, cid, {"commands": ["a"], "max_output_length": 1000,
                                                "timeout_ms": 10_000_000})).json()
        assert item["output"][0]["stdout"] == "xxxxx\n[... 90 characters truncated ...]\nxxxxx"
        assert item["max_output_length"] == 1000
    finally:
        await client.close()


async def test_openapi_lists_exec(scripted) -> None:
    client, _ = scripted
    document = await (await client.get("/openapi.json")).json()
    operation = document["paths"]["/containers/{container_id}/exec"]["post"]
    assert operation["operationId"] == "execContainerCommands"
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert "ExecParams" in document["components"]["schemas"]
