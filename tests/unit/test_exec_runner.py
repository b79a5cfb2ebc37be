"""The exec runner with its real in-container wrapper and killer, run as local processes."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from fixtures.exec_fakes import LocalExec, processes_with
from kontainers.api.shell import ExecParams
from kontainers.gateway.exec_runner import NOT_STARTED, ExecLimits, ShellRunner


@pytest.fixture
def runner(tmp_path) -> ShellRunner:
    return ShellRunner(LocalExec(), ExecLimits(state_dir=str(tmp_path / "state")))


def params(tmp_path, *commands: str, **extra) -> ExecParams:
    return ExecParams(commands=list(commands), workdir=str(tmp_path), **extra)


async def run(runner: ShellRunner, p: ExecParams, **kwargs):
    return await runner.run("ns", "pod", p, call_id="call_test", **kwargs)


async def wait_gone(marker: str, timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_with(marker)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left


async def test_exit_codes_stderr_order_cwd_env(runner, tmp_path) -> None:
    item = await run(runner, params(
        tmp_path, "echo out; echo err >&2", "exit 3", "kill -KILL $$", "pwd", 'printf %s "$GREETING"',
        "echo 1+1 'a b'  \"$((2+3))\"", env={"GREETING": "hé llo\nwörld"}))
    out = [o.model_dump() for o in item.output]
    assert out[0] == {"stdout": "out\n", "stderr": "err\n", "outcome": {"type": "exit", "exit_code": 0}}
    assert out[1]["outcome"] == {"type": "exit", "exit_code": 3}
    assert out[2]["outcome"] == {"type": "exit", "exit_code": 137}
    assert out[3]["stdout"] == f"{tmp_path}\n"
    assert out[4]["stdout"] == "hé llo\nwörld"
    assert out[5]["stdout"] == "1+1 a b 5\n"
    assert item.call_id == "call_test" and item.type == "shell_call_output"


async def test_commands_run_one_after_another(runner, tmp_path) -> None:
    item = await run(runner, params(tmp_path, "sleep 0.2; echo a > f", "cat f", "echo b >> f; cat f"))
    assert [o.stdout for o in item.output] == ["", "a\n", "a\nb\n"]


async def test_missing_workdir_is_exit_1_with_the_shell_message(runner, tmp_path) -> None:
    item = await run(runner, ExecParams(commands=["true"], workdir=str(tmp_path / "nope")))
    assert item.output[0].outcome.model_dump() == {"type": "exit", "exit_code": 1}
    assert "nope" in item.output[0].stderr


async def test_binary_output_is_replaced_not_fatal(runner, tmp_path) -> None:
    item = await run(runner, params(tmp_path, r"printf 'a\377\376b\000c'"))
    assert item.output[0].stdout == "a\ufffd\ufffdb\x00c"


async def test_timeout_kills_the_command_and_its_background_children(runner, tmp_path) -> None:
    marker = f"kx-{uuid.uuid4().hex}"
    sleeper = f"python3 -c 'import time; time.sleep(60)' {marker}"
    started = time.monotonic()
    item = await run(runner, params(tmp_path, f"echo before; {sleeper} & {sleeper}", "echo never",
                                    timeout_ms=500))
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed
    assert item.output[0].outcome.type == "timeout" and item.output[0].stdout == "before\n"
    assert item.output[1].model_dump() == {"stdout": "", "stderr": NOT_STARTED, "outcome": {"type": "timeout"}}
    assert await wait_gone(marker) == []
    assert not list((tmp_path / "state").glob("*.pid"))


async def test_background_child_of_a_finished_command_is_cleaned_up(runner, tmp_path) -> None:
    marker = f"kx-{uuid.uuid4().hex}"
    item = await run(runner, params(
        tmp_path, f"python3 -c 'import time; time.sleep(60)' {marker} >/dev/null 2>&1 & echo started"))
    assert item.output[0].stdout == "started\n" and item.output[0].outcome.exit_code == 0
    assert await wait_gone(marker) == []


async def test_a_cancelled_call_stops_its_command(runner, tmp_path) -> None:
    marker = f"kx-{uuid.uuid4().hex}"
    task = asyncio.ensure_future(run(runner, params(tmp_path, f"python3 -c 'import time; time.sleep(60)' {marker}")))
    deadline = time.monotonic() + 5
    while not processes_with(marker) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await runner.close()
    assert await wait_gone(marker) == []


async def test_killer_before_the_wrapper_started_cancels_it(runner, tmp_path) -> None:
    """The killer marks the exec cancelled; a wrapper starting later kills its command at once."""
    from kontainers.gateway.exec_runner import killer_argv, wrapper_argv

    transport = runner.transport
    state = runner.limits.state_dir

    async def discard(channel, data):
        return None

    task = asyncio.ensure_future(transport.run("ns", "pod", "sandbox", killer_argv(state, "late"), discard))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    code = await transport.run("ns", "pod", "sandbox",
                               wrapper_argv(state, "late", str(tmp_path), "sleep 30", {}), discard)
    assert code == 137 and time.monotonic() - started < 2
    await task


async def test_output_is_bounded_while_a_flood_runs(runner, tmp_path) -> None:
    item = await run(runner, params(tmp_path, "head -c 50000000 /dev/zero | tr '\\0' x; echo; echo END",
                                    max_output_length=1000))
    stdout = item.output[0].stdout
    assert stdout.startswith("x" * 500) and stdout.endswith("x" * 495 + "\nEND\n")
    assert "characters truncated" in stdout and len(stdout) < 1100
    assert item.max_output_length == 1000


async def test_deltas_concatenate_to_the_final_text(runner, tmp_path) -> None:
    deltas: dict[tuple[int, str], str] = {}
    done: list[int] = []

    async def on_delta(index, stream, text):
        assert index not in done
        deltas[(index, stream)] = deltas.get((index, stream), "") + text

    async def on_done(index, output):
        done.append(index)

    item = await run(runner, params(tmp_path, "seq 1 5000; seq 1 10 >&2", "echo ünï", max_output_length=300),
                     on_delta=on_delta, on_done=on_done)
    assert done == [0, 1]
    assert deltas[(0, "stdout")] == item.output[0].stdout
    assert deltas[(0, "stderr")] == item.output[0].stderr == "".join(f"{i}\n" for i in range(1, 11))
    assert deltas[(1, "stdout")] == "ünï\n"


@pytest.mark.parametrize("stage", ["background child", "timeout"])
async def test_without_setsid_the_exec_session_is_cleaned_up(tmp_path, stage) -> None:
    """Images without setsid: the wrapper's own group (runc makes each exec a session leader)."""
    import os
    import shutil
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(os.path.realpath(sys.executable), bin_dir / "python3")
    for tool in ("mkdir", "rm", "sleep"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    runner = ShellRunner(LocalExec(env={"PATH": str(bin_dir)}), ExecLimits(state_dir=str(tmp_path / "state")))
    marker = f"kx-{uuid.uuid4().hex}"
    sleeper = f"python3 -c 'import time; time.sleep(60)' {marker}"
    command = f"{sleeper} >/dev/null 2>&1 & echo ok" if stage == "background child" else sleeper
    # Only the timeout stage needs a short budget; under load two commands can take over 1.5 s.
    budget = 10_000 if stage == "background child" else 1500
    item = await run(runner, params(tmp_path, command, "command -v setsid || echo none", timeout_ms=budget))
    if stage == "background child":
        assert item.output[0].stdout == "ok\n" and item.output[1].stdout == "none\n", item.output
    else:
        assert item.output[0].outcome.type == "timeout", item.output
    assert await wait_gone(marker) == []


async def test_the_callers_path_does_not_change_the_wrapper(runner, tmp_path) -> None:
    item = await run(runner, params(tmp_path, "echo $PATH", env={"PATH": "/nonexistent"}))
    assert item.output[0].stdout == "/nonexistent\n" and item.output[0].outcome.exit_code == 0
    assert not list((tmp_path / "state").glob("*.pid"))
