"""Running a shell call's commands in a sandbox: the in-container wrapper, output bounds, timeouts.

Each command is one `pods/exec` of `/bin/sh -c WRAPPER …` in the `sandbox` container, one after
another (a model writes `pip install x` then `python use_x.py`: order matters, and commands of one
call share the container's files, so running them at once would race).

**No process left running.** The wrapper starts the command in a session of its own (`setsid`,
util-linux/busybox), records `wrapper-pid child-pgid` in `STATE/<exec id>.pid` (STATE = /tmp/…,
the sandbox's own /tmp), waits, then kills that process group — so background children of a
finished command go too — and exits with the command's status. On timeout (or when the caller
goes away) the gateway runs a second exec, the killer, which marks `<exec id>.cancel` and kills the
recorded group and the wrapper; a wrapper that starts after the killer gave up sees the mark and
kills its command at once. Closing an exec's websocket does not end its process in Kubernetes,
hence the second exec. Without `setsid` the wrapper's own group (runc makes every exec a session
leader) is used: what it finds in /proc with that group is killed at the end. Not covered: a
process that starts a session of its own (daemonizing) leaves the group and survives; killed
orphans stay zombies until the sandbox's PID 1 reaps them.
Threat model: everything in the sandbox runs as one user and may rewrite the state files; the worst
it can make the killer do is kill other processes of that same sandbox.

**Bounded memory.** Each stream keeps at most `max_output_length` characters: the first half
(streamed live) and a sliding window of the last half; what falls out between them is only
counted, and a marker line says how much. The websocket reader's flow control stops reading from
the API server while a chunk is being handled, so a flood never piles up in the gateway.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..api.shell import (
    ExecParams,
    ShellCallOutput,
    ShellCommandOutput,
    ShellOutcomeExit,
    ShellOutcomeTimeout,
)
from ..observability import EXEC_COMMANDS, EXEC_SECONDS

log = logging.getLogger(__name__)

STDOUT, STDERR = 1, 2  # the channel numbers of the Kubernetes exec protocol
Sink = Callable[[int, bytes], Awaitable[None]]
StreamName = Literal["stdout", "stderr"]
# (command index, stream, text) of a live delta; (command index, output) once a command ended.
DeltaCallback = Callable[[int, StreamName, str], Awaitable[None]]
DoneCallback = Callable[[int, ShellCommandOutput], Awaitable[None]]

KILL_TIMEOUT = 10.0
NOT_STARTED = "kontainers: not started, the call's timeout_ms had run out\n"

# $0 name, $1 state dir, $2 exec id, $3 workdir, $4 the command, then NAME VALUE pairs (exported for
# the command only: a PATH of the caller's must not change which tools the wrapper runs).
WRAPPER = r"""d=$1 id=$2 wd=$3 c=$4
shift 4
(umask 077; mkdir -p "$d") 2>/dev/null
cd "$wd" || exit 1
S=$(command -v setsid 2>/dev/null)
(
  while [ $# -ge 2 ]; do export "$1=$2"; shift 2; done
  if [ -n "$S" ]; then exec "$S" /bin/sh -c "$c"; else exec /bin/sh -c "$c"; fi
) </dev/null &
p=$!
if [ -n "$S" ]; then g=$p; else read -r g </proc/$$/stat; g=${g##*") "}; set -- $g; g=$3; fi
echo "$$ $p $g" >"$d/$id.pid" 2>/dev/null
if [ -e "$d/$id.cancel" ]; then kill -KILL -"$p" "$p" 2>/dev/null; rm -f "$d/$id.pid" "$d/$id.cancel"; exit 137; fi
wait "$p"; s=$?
if [ "$g" = "$p" ]; then
  kill -KILL -"$p" 2>/dev/null
else
  n=0
  while [ $n -lt 10 ]; do
    k=
    for f in /proc/[0-9]*/stat; do
      { read -r l <"$f"; } 2>/dev/null || continue  # braces: the redirect's own error is silenced too
      q=${f#/proc/}; q=${q%/stat}; l=${l##*") "}; set -- $l
      [ "$3" = "$g" ] && [ "$q" != "$$" ] && k="$k $q"
    done
    [ -z "$k" ] && break
    kill -KILL $k 2>/dev/null; n=$((n+1))
  done
fi
rm -f "$d/$id.pid"
exit $s
"""

# $0 name, $1 state dir, $2 exec id. Waits up to ~2 s for the wrapper to have recorded itself.
KILLER = r"""d=$1 id=$2
(umask 077; mkdir -p "$d") 2>/dev/null
: >"$d/$id.cancel"
n=0
while [ $n -lt 40 ]; do
  if read -r w p g <"$d/$id.pid" 2>/dev/null; then
    kill -KILL -"$p" "$p" 2>/dev/null
    [ "$g" = "$w" ] && kill -KILL -"$g" 2>/dev/null
    kill -KILL "$w" 2>/dev/null
    rm -f "$d/$id.pid" "$d/$id.cancel"
    exit 0
  fi
  sleep 0.05 2>/dev/null || sleep 1
  n=$((n+1))
done
exit 0
"""


def wrapper_argv(state_dir: str, exec_id: str, workdir: str, command: str, env: dict[str, str]) -> list[str]:
    pairs = [item for name, value in env.items() for item in (name, value)]
    return ["/bin/sh", "-c", WRAPPER, "kontainers-exec", state_dir, exec_id, workdir, command, *pairs]


def killer_argv(state_dir: str, exec_id: str) -> list[str]:
    return ["/bin/sh", "-c", KILLER, "kontainers-kill", state_dir, exec_id]


class ExecTransport(Protocol):
    async def run(self, namespace: str, pod: str, container: str, argv: Sequence[str], sink: Sink) -> int:
        """Run `argv` in the container; stdout/stderr chunks go to `sink(channel, data)` in order;
        returns the exit code. Raises `ExecUnavailable` (pod not reachable: retry) or `ExecFailed`."""


class ExecUnavailable(Exception):
    """The pod or its sandbox container cannot be reached right now (retry later)."""


class ExecFailed(Exception):
    """The container runtime could not run the command (e.g. no /bin/sh in the image)."""


class OutputBuffer:
    """One stream of one command, kept to `limit` characters: the first half, then the last half.

    `feed()` returns what may be streamed at once (the head); `finish()` the rest: the tail,
    after a marker when characters were left out. Together they are exactly `text()`.
    """

    def __init__(self, limit: int) -> None:
        self.head_limit = (limit + 1) // 2
        self.tail_limit = limit // 2
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._head: list[str] = []
        self._head_len = 0
        self._tail: deque[str] = deque()
        self._tail_len = 0
        self.dropped = 0  # characters left out between head and tail
        self._finished: str | None = None

    def feed(self, data: bytes) -> str:
        return self._take(self._decoder.decode(data))

    def _take(self, text: str) -> str:
        live = ""
        if self._head_len < self.head_limit and text:
            live = text[: self.head_limit - self._head_len]
            self._head.append(live)
            self._head_len += len(live)
            text = text[len(live):]
        if text:
            self._tail.append(text)
            self._tail_len += len(text)
            excess = self._tail_len - self.tail_limit
            while excess > 0:
                first = self._tail[0]
                if len(first) <= excess:
                    self._tail.popleft()
                    cut = len(first)
                else:
                    self._tail[0] = first[excess:]
                    cut = excess
                self._tail_len -= cut
                self.dropped += cut
                excess -= cut
        return live

    def finish(self) -> str:
        """What was not streamed yet; after this, `feed()` must not be called again."""
        if self._finished is None:
            self._streamed = "".join(self._head)
            live = self._take(self._decoder.decode(b"", final=True))
            marker = f"\n[... {self.dropped} characters truncated ...]\n" if self.dropped else ""
            self._finished = live + marker + "".join(self._tail)
        return self._finished

    def text(self) -> str:
        """The whole kept text: what `feed()` returned, then what `finish()` returned."""
        rest = self.finish()
        return self._streamed + rest


@dataclass
class ExecLimits:
    default_timeout_ms: int = 120_000
    max_timeout_ms: int = 300_000
    default_max_output_length: int = 16_384
    max_output_length: int = 1_048_576
    container: str = "sandbox"
    state_dir: str = "/tmp/.kontainers-exec"


class ShellRunner:
    """Runs the commands of one exec call; see the module docstring for the semantics."""

    def __init__(self, transport: ExecTransport, limits: ExecLimits | None = None) -> None:
        self.transport = transport
        self.limits = limits or ExecLimits()
        self._background: set[asyncio.Task] = set()

    def timeout_ms(self, params: ExecParams) -> int:
        return min(params.timeout_ms or self.limits.default_timeout_ms, self.limits.max_timeout_ms)

    def output_limit(self, params: ExecParams) -> int:
        wanted = params.max_output_length
        return min(self.limits.default_max_output_length if wanted is None else wanted,
                   self.limits.max_output_length)

    async def run(self, namespace: str, pod: str, params: ExecParams, *, call_id: str,
                  on_delta: DeltaCallback | None = None, on_done: DoneCallback | None = None) -> ShellCallOutput:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_ms(params) / 1000
        outputs = []
        for index, command in enumerate(params.commands):
            output = await self._command(namespace, pod, index, command, params, deadline, on_delta)
            outputs.append(output)
            if on_done is not None:
                await on_done(index, output)
        return ShellCallOutput(call_id=call_id, max_output_length=params.max_output_length, output=outputs)

    async def _command(self, namespace: str, pod: str, index: int, command: str, params: ExecParams,
                       deadline: float, on_delta: DeltaCallback | None) -> ShellCommandOutput:
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        if remaining <= 0:
            EXEC_COMMANDS.labels("timeout").inc()
            return await self._ended(index, "", NOT_STARTED, ShellOutcomeTimeout(), on_delta)
        limit = self.output_limit(params)
        buffers = {STDOUT: OutputBuffer(limit), STDERR: OutputBuffer(limit)}
        exec_id = secrets.token_hex(12)

        async def sink(channel: int, data: bytes) -> None:
            buffer = buffers.get(channel)
            if buffer is None:
                return
            live = buffer.feed(data)
            if live and on_delta is not None:
                await on_delta(index, "stdout" if channel == STDOUT else "stderr", live)

        argv = wrapper_argv(self.limits.state_dir, exec_id, params.workdir, command, params.env)
        started = time.perf_counter()
        outcome_label = "error"
        try:
            timer = asyncio.timeout(remaining)
            try:
                async with timer:
                    code = await self.transport.run(namespace, pod, self.limits.container, argv, sink)
                outcome = ShellOutcomeExit(exit_code=code)
                outcome_label = "success" if code == 0 else "failure"
            except TimeoutError:
                if not timer.expired():
                    raise
                outcome = ShellOutcomeTimeout()
                outcome_label = "timeout"
                await self._kill(namespace, pod, exec_id)
        except BaseException:
            # The caller went away, the gateway is stopping, or the transport failed mid-way: the
            # command may still run in the sandbox, so the killer runs — in the background, since
            # this task may be cancelled.
            self._kill_in_background(namespace, pod, exec_id)
            raise
        finally:
            EXEC_COMMANDS.labels(outcome_label).inc()
            EXEC_SECONDS.labels(outcome_label).observe(time.perf_counter() - started)
        return await self._ended(index, buffers[STDOUT], buffers[STDERR], outcome, on_delta)

    async def _ended(self, index: int, stdout: OutputBuffer | str, stderr: OutputBuffer | str,
                     outcome: ShellOutcomeExit | ShellOutcomeTimeout,
                     on_delta: DeltaCallback | None) -> ShellCommandOutput:
        texts = {}
        for name, stream in (("stdout", stdout), ("stderr", stderr)):
            if isinstance(stream, str):
                rest, full = stream, stream
            else:
                rest, full = stream.finish(), stream.text()
            if rest and on_delta is not None:
                await on_delta(index, name, rest)
            texts[name] = full
        return ShellCommandOutput(stdout=texts["stdout"], stderr=texts["stderr"], outcome=outcome)

    async def _kill(self, namespace: str, pod: str, exec_id: str) -> None:
        async def discard(channel: int, data: bytes) -> None:
            return None

        try:
            async with asyncio.timeout(KILL_TIMEOUT):  # not wait_for: it can swallow a cancellation (3.11)
                await self.transport.run(namespace, pod, self.limits.container,
                                         killer_argv(self.limits.state_dir, exec_id), discard)
        except Exception as exc:  # the pod went away meanwhile, or the API server is unreachable
            log.warning("stopping exec %s in %s/%s failed: %s", exec_id, namespace, pod, type(exc).__name__)

    def _kill_in_background(self, namespace: str, pod: str, exec_id: str) -> None:
        task = asyncio.ensure_future(self._kill(namespace, pod, exec_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Wait for killers still running (on shutdown)."""
        if self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)


def new_exec_id() -> str:
    return "exec_" + secrets.token_hex(16)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)
