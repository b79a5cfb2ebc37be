"""`POST /v1/containers/{container_id}/exec`: run a model's `shell_call` in the container.

The body is the call's `action` plus options (`kontainers.api.shell.ExecParams`); the reply is
the `shell_call_output` item to hand back to `responses.create`, or with `"stream": true` an
event stream (`text/event-stream`) of the Responses API's shell output events ending with
`response.output_item.done` carrying that item. Semantics: `exec_runner.py`; transport:
`pod_exec.py`.

Retries: the SDKs retry 5xx and 409 replies, POSTs included. A 503 (+ Retry-After) is sent only
while no command has started, so a retry never runs a command twice; any later failure says
`x-should-retry: false`. The maximum `timeout_ms` (300 s) stays below the SDKs' default request
timeout (600 s), which would otherwise time out and retry a call still running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import BaseModel

from ..api.shell import (
    MAX_ARGUMENT_CHARS,
    ExecParams,
    ShellCallOutput,
    ShellCallOutputContentDeltaEvent,
    ShellCallOutputContentDoneEvent,
    ShellCallOutputItemDoneEvent,
    ShellCommandOutput,
    ShellOutputDelta,
    ShellStreamErrorEvent,
)
from ..settings import GatewaySettings
from . import resource
from .bodies import read_json_object
from .cluster import Cluster
from .container_routes import find_container, touch
from ..api.errors import APIError, bad_request, not_ready
from .exec_runner import ExecFailed, ExecLimits, ExecUnavailable, ShellRunner, new_call_id, new_exec_id
from .file_routes import usable_container
from .pod_exec import PodExec
from .state import SETTINGS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SHELL = web.AppKey("shell", ShellRunner)
NO_RETRY = {"x-should-retry": "false"}


def setup(app: web.Application, settings: GatewaySettings, cluster: Cluster) -> None:
    """Mount the route; commands run through pods/exec with the cluster's API client."""
    transport = PodExec(lambda: cluster.api_client(), connect_timeout=settings.exec_connect_timeout)
    app[SHELL] = ShellRunner(transport, limits_of(settings))
    app.router.add_routes(routes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[SHELL].close()
        close = getattr(app[SHELL].transport, "close", None)
        if close is not None:
            await close()

    app.cleanup_ctx.append(lifecycle)


def limits_of(settings: GatewaySettings) -> ExecLimits:
    return ExecLimits(default_timeout_ms=settings.exec_default_timeout_ms, max_timeout_ms=settings.exec_max_timeout_ms,
                      default_max_output_length=settings.exec_default_max_output_length,
                      max_output_length=settings.exec_max_output_length)


@routes.post("/v1/containers/{container_id}/exec")
async def exec_commands(request: web.Request) -> web.StreamResponse:
    find_container(request)  # 404 before anything about the body
    params = ExecParams.model_validate(await read_json_object(request))
    if params.argument_chars() > MAX_ARGUMENT_CHARS:
        raise bad_request(f"The commands, env and workdir total more than {MAX_ARGUMENT_CHARS} characters; "
                          "write long scripts to a file first.", param="commands", code="string_above_max_length")
    obj = usable_container(request)  # 400 expired or failed, 503 while starting; counts as activity
    pod = (obj.get("status") or {}).get("podName")
    if not pod:
        raise not_ready(request.app[SETTINGS].not_ready_retry_after)
    call = _Call(request, obj, pod, params)
    if params.stream:
        return await call.stream()
    return web.json_response(_wire(await call.run()))


def _wire(item: BaseModel) -> dict:
    return item.model_dump(mode="json", exclude_none=True)


class _Call:
    def __init__(self, request: web.Request, obj: dict, pod: str, params: ExecParams) -> None:
        self.request = request
        self.obj = obj
        self.pod = pod
        self.params = params
        self.runner = request.app[SHELL]
        self.call_id = params.call_id or new_call_id()
        self.exec_id = new_exec_id()
        self.started_any = False
        self.outcomes: list[str] = []
        self.response: web.StreamResponse | None = None
        self.sequence = 0

    async def run(self) -> ShellCallOutput:
        started = time.perf_counter()
        namespace = self.obj["metadata"]["namespace"]
        try:
            item = await self.runner.run(namespace, self.pod, self.params, call_id=self.call_id,
                                         on_delta=self._delta if self.params.stream else None,
                                         on_done=self._done)
        except ExecUnavailable:
            if self.started_any:
                raise APIError(502, "The container went away while the commands ran.", type="server_error",
                               code="container_unavailable", headers=NO_RETRY) from None
            raise not_ready(self.request.app[SETTINGS].not_ready_retry_after) from None
        except ExecFailed as exc:
            raise APIError(502, f"The container could not run the command: {exc}.", type="server_error",
                           code="exec_failed", headers=NO_RETRY) from None
        finally:
            touch(self.request, self.obj)  # a long call keeps the container alive to its end
        log.info("exec %s in %s: %d command(s), outcomes %s, %.0f ms", self.exec_id,
                 resource.container_id(self.obj), len(self.params.commands), ",".join(self.outcomes),
                 (time.perf_counter() - started) * 1000)
        return item

    async def _done(self, index: int, output: ShellCommandOutput) -> None:
        self.started_any = True
        outcome = output.outcome
        self.outcomes.append(f"exit {outcome.exit_code}" if outcome.type == "exit" else "timeout")
        if self.params.stream:
            await self._send(ShellCallOutputContentDoneEvent(
                sequence_number=self._next(), item_id=self.exec_id, command_index=index, output=[output]))

    async def _delta(self, index: int, stream: str, text: str) -> None:
        self.started_any = True
        await self._send(ShellCallOutputContentDeltaEvent(
            sequence_number=self._next(), item_id=self.exec_id, command_index=index,
            delta=ShellOutputDelta(**{stream: text})))

    def _next(self) -> int:
        number, self.sequence = self.sequence, self.sequence + 1
        return number

    async def _send(self, event: BaseModel) -> None:
        if self.response is None:
            # Prepared at the first event: a failure before it is still a JSON error reply.
            self.response = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            await self.response.prepare(self.request)
        data = event.model_dump_json(exclude_none=True)
        await self.response.write(f"event: {event.type}\ndata: {data}\n\n".encode())

    async def stream(self) -> web.StreamResponse:
        try:
            item = await self.run()
            await self._send(ShellCallOutputItemDoneEvent(sequence_number=self._next(), item=item))
        except ConnectionResetError:
            log.info("exec %s: the client went away; its command was stopped", self.exec_id)
            return self.response or web.Response(status=499)
        except APIError as error:
            if self.response is None:
                raise
            await self._send(ShellStreamErrorEvent(sequence_number=self._next(), code=error.code,
                                                   message=error.message, param=error.param))
        assert self.response is not None
        await self.response.write_eof()
        return self.response
