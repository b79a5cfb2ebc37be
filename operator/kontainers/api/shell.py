"""Wire objects of `POST /v1/containers/{id}/exec`: the OpenAI shell tool's own format.

The request is a `shell_call`'s `action` (`commands`, `timeout_ms`, `max_output_length`) plus a
few optional fields; the reply is a `shell_call_output` input item (openai-python:
`types/responses/response_input_item_param.py` `ShellCallOutput`) that can be appended unchanged
to the `input` of the next `responses.create`. Streamed replies use the Responses API's events
`response.shell_call_output_content.delta` / `.done` (`response_shell_call_output_content_*_event.py`)
and end with `response.output_item.done` carrying that same item.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator

DEFAULT_WORKDIR = "/mnt/data"
MAX_COMMANDS = 64
# Commands and env travel in the pods/exec URL (percent-encoded: up to 3x), and the API server
# reads at most 1 MiB of request line and headers.
MAX_ARGUMENT_CHARS = 256 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _no_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} cannot contain NUL characters")
    return value


class ExecParams(BaseModel):
    """The body of `POST /v1/containers/{id}/exec`: a shell call's `action` plus options."""

    model_config = {"extra": "forbid", "strict": True}

    commands: list[str] = Field(min_length=1, max_length=MAX_COMMANDS, description=(
        "Shell commands, each run with `/bin/sh -c` in the sandbox container, one after another, in order."))
    timeout_ms: int | None = Field(default=None, gt=0, description=(
        "Wall-clock budget of the whole call in milliseconds; the running command then ends with outcome "
        "`timeout` (its processes are killed) and later commands are not started. Default and maximum are "
        "server settings (120000 and 300000); larger values are lowered to the maximum."))
    max_output_length: int | None = Field(default=None, ge=0, description=(
        "Characters kept of each command's stdout and of its stderr: the first half and the last half, "
        "with a marker line between them saying how many characters were left out. Default 16384, "
        "maximum 1048576 (server settings); larger values are lowered to the maximum."))
    call_id: str | None = Field(default=None, min_length=1, max_length=256, description=(
        "The `call_id` of the model's `shell_call`, echoed in the reply; a `call_…` id is made up if absent."))
    env: dict[str, str] = Field(default_factory=dict, max_length=256, description=(
        "Extra environment variables of the commands (on top of the container's own)."))
    workdir: str = Field(default=DEFAULT_WORKDIR, min_length=1, max_length=4096, description=(
        "Absolute working directory of the commands."))
    stream: bool = Field(default=False, description=(
        "Reply with `text/event-stream`: output deltas while the commands run, then the complete item."))

    @field_validator("commands")
    @classmethod
    def _commands(cls, commands: list[str]) -> list[str]:
        for command in commands:
            _no_nul(command, "commands")
        return commands

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
            _no_nul(value, "env values")
        return env

    @field_validator("workdir")
    @classmethod
    def _workdir(cls, workdir: str) -> str:
        if not workdir.startswith("/"):
            raise ValueError("workdir must be an absolute path")
        return _no_nul(workdir, "workdir")

    def argument_chars(self) -> int:
        return sum(map(len, self.commands)) + sum(len(k) + len(v) for k, v in self.env.items()) + len(self.workdir)


class ShellOutcomeExit(BaseModel):
    """The command finished with this exit code (128 + N when killed by signal N, e.g. 137)."""

    type: Literal["exit"] = "exit"
    exit_code: int


class ShellOutcomeTimeout(BaseModel):
    """The call's `timeout_ms` ran out while the command ran (or before it could start)."""

    type: Literal["timeout"] = "timeout"


ShellOutcome = Annotated[ShellOutcomeExit | ShellOutcomeTimeout, Field(discriminator="type")]


class ShellCommandOutput(BaseModel):
    """What one command printed, and how it ended (`ResponseFunctionShellCallOutputContentParam`)."""

    stdout: str = Field(description="Standard output, decoded as UTF-8 (invalid bytes become U+FFFD), truncated.")
    stderr: str = Field(description="Standard error, decoded and truncated the same way.")
    outcome: ShellOutcome


class ShellCallOutput(BaseModel):
    """The 200 reply of `POST /v1/containers/{id}/exec`: a `shell_call_output` input item."""

    type: Literal["shell_call_output"] = "shell_call_output"
    call_id: str = Field(description="The request's `call_id`, or a made-up `call_…` id.")
    max_output_length: int | None = Field(default=None, description="The request's `max_output_length`, echoed.")
    output: list[ShellCommandOutput] = Field(description="One entry per command, in the order of `commands`.")
    status: Literal["completed"] = "completed"


class ShellOutputDelta(BaseModel):
    """A piece of one stream of one command; exactly one of the two is set."""

    stdout: str | None = None
    stderr: str | None = None


class ShellCallOutputContentDeltaEvent(BaseModel):
    """`response.shell_call_output_content.delta`: output of command `command_index` as it arrives.

    The deltas of a stream concatenate to its final text: the first half of `max_output_length`
    streams live, the rest (or, once output was left out, the marker and the last half) when the
    command ends."""

    type: Literal["response.shell_call_output_content.delta"] = "response.shell_call_output_content.delta"
    sequence_number: int
    output_index: int = 0
    item_id: str = Field(description="`exec_…`: this call's id (also in every event of the stream).")
    command_index: int
    delta: ShellOutputDelta


class ShellCallOutputContentDoneEvent(BaseModel):
    """`response.shell_call_output_content.done`: command `command_index` has ended."""

    type: Literal["response.shell_call_output_content.done"] = "response.shell_call_output_content.done"
    sequence_number: int
    output_index: int = 0
    item_id: str
    command_index: int
    output: list[ShellCommandOutput] = Field(description="The command's final output (one entry).")


class ShellCallOutputItemDoneEvent(BaseModel):
    """`response.output_item.done`: the last event; `item` is what the non-streamed reply is."""

    type: Literal["response.output_item.done"] = "response.output_item.done"
    sequence_number: int
    output_index: int = 0
    item: ShellCallOutput


class ShellStreamErrorEvent(BaseModel):
    """`error`: the call failed after the stream started (the Responses API's error event)."""

    type: Literal["error"] = "error"
    sequence_number: int
    code: str | None = None
    message: str
    param: str | None = None
