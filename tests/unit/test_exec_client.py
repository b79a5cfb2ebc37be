"""The client helpers of kontainers.shell, through the official SDKs against a gateway app."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import TypeAdapter

from fixtures.exec_fakes import LocalExec, run_with_pod, start_exec_client
from fixtures.gateway_fake import FakeCluster
from kontainers.shell import arun_shell_call, exec_body, run_shell_call, shell_executor

KEY = "sk-exec-client"


@pytest.fixture
async def gateway(tmp_path):
    cluster = FakeCluster()
    cluster.add_key(KEY, "client-tenant")
    cluster.operator = run_with_pod(cluster)
    client = await start_exec_client(cluster, LocalExec(), state_dir=tmp_path / "state")
    yield client
    await client.close()


def base_url(client) -> str:
    return str(client.make_url("/v1"))


async def new_container(client) -> str:
    response = await client.post("/v1/containers", json={"name": "c"}, headers={"Authorization": f"Bearer {KEY}"})
    return (await response.json())["id"]


def shell_call(commands, **action):
    from openai.types.responses import ResponseFunctionShellToolCall

    return ResponseFunctionShellToolCall.model_validate({
        "id": "sh_1", "type": "shell_call", "call_id": "call_model_1", "status": "completed",
        "action": {"commands": commands, "timeout_ms": None, "max_output_length": None, **action}})


def test_exec_body_from_sdk_models_dicts_and_actions() -> None:
    call = shell_call(["ls"], timeout_ms=500)
    assert exec_body(call) == {"commands": ["ls"], "timeout_ms": 500, "call_id": "call_model_1"}
    assert exec_body(call.model_dump()) == exec_body(call)
    assert exec_body({"commands": ["a"], "max_output_length": 9}, env={"A": "1"}, workdir="/tmp") == {
        "commands": ["a"], "max_output_length": 9, "env": {"A": "1"}, "workdir": "/tmp"}
    with pytest.raises(ValueError):
        exec_body({"action": {"commands": []}})


async def test_run_shell_call_with_the_sync_sdk(gateway, tmp_path) -> None:
    from openai import OpenAI
    from openai.types.responses.response_input_item_param import ShellCallOutput

    cid = await new_container(gateway)
    sdk = OpenAI(base_url=base_url(gateway), api_key=KEY, max_retries=0)
    item = await asyncio.to_thread(run_shell_call, cid, shell_call(["echo hi", "exit 2"]), client=sdk,
                                   workdir=str(tmp_path))
    TypeAdapter(ShellCallOutput).validate_python(item)
    assert item["call_id"] == "call_model_1"
    assert [o["outcome"] for o in item["output"]] == [{"type": "exit", "exit_code": 0},
                                                      {"type": "exit", "exit_code": 2}]


async def test_arun_shell_call_errors_are_sdk_exceptions(gateway) -> None:
    import openai

    sdk = openai.AsyncOpenAI(base_url=base_url(gateway), api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError):
        await arun_shell_call("cntr_" + "0" * 48, shell_call(["ls"]), client=sdk)
    cid = await new_container(gateway)
    with pytest.raises(openai.BadRequestError) as raised:
        await arun_shell_call(cid, {"commands": ["ls"]}, client=sdk, workdir="relative")
    assert raised.value.param == "workdir"


async def test_agents_shell_tool_executor(gateway, tmp_path) -> None:
    from agents import RunContextWrapper, ShellTool
    from agents.tool import ShellActionRequest, ShellCallData, ShellCommandRequest, ShellResult
    from openai import AsyncOpenAI

    cid = await new_container(gateway)
    sdk = AsyncOpenAI(base_url=base_url(gateway), api_key=KEY, max_retries=0)
    executor = shell_executor(cid, client=sdk, workdir=str(tmp_path))
    tool = ShellTool(executor=executor)
    request = ShellCommandRequest(ctx_wrapper=RunContextWrapper(context=None), data=ShellCallData(
        call_id="call_agents", action=ShellActionRequest(commands=["echo a; echo b >&2", "sleep 5"],
                                                         timeout_ms=300, max_output_length=50)))
    result = await tool.executor(request)
    assert isinstance(result, ShellResult) and result.max_output_length == 50
    first, second = result.output
    assert (first.stdout, first.stderr, first.exit_code, first.command) == ("a\n", "b\n", 0, "echo a; echo b >&2")
    assert second.status == "timeout" and second.outcome.exit_code is None
