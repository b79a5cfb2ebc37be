"""Client helpers: run a model's `shell_call` in a kontainers container (needs `openai` installed).

For a raw Responses API loop (the model's `shell_call` in, the `shell_call_output` to send back out):

    item = run_shell_call(container.id, shell_call, client=client)   # or await arun_shell_call(…)
    input_items.append(item)

For the OpenAI Agents SDK (`openai-agents`), an executor for its shell tool:

    ShellTool(executor=shell_executor(container.id))

Both call `POST /v1/containers/{id}/exec` through the SDK's own client (`client.post`), so its
base URL, API key, retries and timeouts apply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

__all__ = ["arun_shell_call", "exec_body", "run_shell_call", "shell_executor"]


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def exec_body(shell_call: Any, *, env: Mapping[str, str] | None = None, workdir: str | None = None) -> dict:
    """The exec body of a `shell_call` item (an SDK model or a dict) or of its bare `action`."""
    action = _field(shell_call, "action") or shell_call
    commands = _field(action, "commands")
    if not commands:
        raise ValueError("the shell call has no commands")
    body: dict[str, Any] = {"commands": list(commands)}
    for name in ("timeout_ms", "max_output_length"):
        value = _field(action, name)
        if value is not None:
            body[name] = value
    call_id = _field(shell_call, "call_id")
    if call_id:
        body["call_id"] = call_id
    if env:
        body["env"] = dict(env)
    if workdir:
        body["workdir"] = workdir
    return body


def run_shell_call(container_id: str, shell_call: Any, *, client: Any = None,
                   env: Mapping[str, str] | None = None, workdir: str | None = None) -> dict:
    """Run the call's commands in the container; the `shell_call_output` item (a dict) to hand back.

    `client` is an `openai.OpenAI` pointed at kontainers (default: `OpenAI()` from the environment).
    """
    if client is None:
        from openai import OpenAI

        client = OpenAI()
    return client.post(f"/containers/{container_id}/exec", body=exec_body(shell_call, env=env, workdir=workdir),
                       cast_to=object)


async def arun_shell_call(container_id: str, shell_call: Any, *, client: Any = None,
                          env: Mapping[str, str] | None = None, workdir: str | None = None) -> dict:
    """`run_shell_call` with an `openai.AsyncOpenAI` client."""
    if client is None:
        from openai import AsyncOpenAI

        client = AsyncOpenAI()
    return await client.post(f"/containers/{container_id}/exec",
                             body=exec_body(shell_call, env=env, workdir=workdir), cast_to=object)


def shell_executor(container_id: str, *, client: Any = None, env: Mapping[str, str] | None = None,
                   workdir: str | None = None) -> Callable[[Any], Awaitable[Any]]:
    """An executor for the Agents SDK's `ShellTool(executor=…)`: its `ShellCommandRequest` in,
    a `ShellResult` out, the commands run in the container. `client`: an `openai.AsyncOpenAI`."""
    state: dict[str, Any] = {"client": client}

    async def execute(request: Any) -> Any:
        from agents import ShellCallOutcome, ShellCommandOutput, ShellResult

        if state["client"] is None:
            from openai import AsyncOpenAI

            state["client"] = AsyncOpenAI()
        data = request.data
        call = {"call_id": data.call_id, "action": data.action}
        item = await arun_shell_call(container_id, call, client=state["client"], env=env, workdir=workdir)
        outputs = []
        for command, entry in zip(data.action.commands, item["output"]):
            outcome = entry["outcome"]
            outputs.append(ShellCommandOutput(
                stdout=entry["stdout"], stderr=entry["stderr"], command=command,
                outcome=ShellCallOutcome(type=outcome["type"], exit_code=outcome.get("exit_code"))))
        return ShellResult(output=outputs, max_output_length=item.get("max_output_length"))

    return execute
