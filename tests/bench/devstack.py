"""`kontainers dev` on fake nodes for the bench scripts of this folder (not a bench itself).

    with DevStack(work_dir) as dev:
        client = openai.OpenAI(base_url=dev.base_url, api_key=dev.api_key)
        dev.kubectl("get", "containers", "-A")

Starts `kontainers dev --fake-nodes` in `work_dir/dev` with a free gateway port, a free sidecar
port and its own pod range (so it runs beside another instance or a test session), waits for
DIR/env, and stops it with SIGTERM (the process group is SIGKILLed if it outlives the timeout).

`restart_operator=True` runs the same `kontainers dev` through this file's `__main__`, which
restarts the operator whenever it exits, as the Deployment's pod would be restarted on a cluster:
a bench can then SIGKILL `dev.operator_pid()` over and over. Without it `kontainers dev` stops
when its operator dies.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from kontainers.cluster.process import free_port

HERE = Path(__file__).resolve()


def free_pod_cidr() -> str:
    """A 127.N.0.0/16 whose lock no other `kontainers dev` or test session holds now (it may
    still be taken before this run's `kontainers dev` takes it: then that one says so)."""
    from kontainers.cluster.launcher import hold_pod_cidr
    from kontainers.cluster.process import LockBusy

    start = 90 + os.getpid() % 160  # two benches started together rarely probe the same range
    for n in [*range(start, 250), *range(90, start)]:
        try:
            hold_pod_cidr(f"127.{n}.0.0/16", "a bench probing for a free range").close()
        except LockBusy:
            continue
        return f"127.{n}.0.0/16"
    raise SystemExit("no free 127.N.0.0/16 pod range for kontainers dev")


def children(parent: int) -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of the direct children of `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            found.append((int(entry), cmdline))
    return found


class DevStack:
    def __init__(self, work: Path, *, env: dict[str, str] | None = None, restart_operator: bool = False,
                 startup_timeout: float = 600.0, extra_args: tuple[str, ...] = ()) -> None:
        self.work = work
        self.state = work / "dev"
        self.env = {**os.environ, "KONTAINERS_GATEWAY_LOG_LEVEL": "WARNING", **(env or {})}
        self.restart_operator = restart_operator
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.sidecar_port = free_port()

    # --- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        args = ["dev", "--state-dir", str(self.state), "--port", "0", "--fake-nodes",
                "--sidecar-port", str(self.sidecar_port), "--pod-cidr", free_pod_cidr(), *self.extra_args]
        if self.restart_operator:
            argv = [sys.executable, str(HERE), *args]
        else:
            argv = [sys.executable, "-m", "kontainers.cli", *args]
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = self.work / "dev.out"
        self.proc = subprocess.Popen(argv, env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while not (self.state / "env").exists():
            if self.proc.poll() is not None:
                raise SystemExit(f"kontainers dev exited ({self.proc.returncode}); tail of {self.log}:\n"
                                 + self.tail())
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"kontainers dev not ready within {self.startup_timeout:.0f}s; see {self.log}")
            time.sleep(0.3)
        values = {}
        for line in (self.state / "env").read_text().splitlines():
            name, _, value = line.partition("=")
            values[name] = shlex.split(value)[0]
        self.base_url = values["OPENAI_BASE_URL"]
        self.api_key = values["OPENAI_API_KEY"]
        self.kubeconfig = values["KUBECONFIG"]
        self.origin = self.base_url.removesuffix("/v1")
        self.metrics_url = next((word for line in self.log.read_text(errors="replace").splitlines()
                                 if "gateway metrics" in line for word in line.split()
                                 if word.startswith("http://")), None)

    def stop(self, timeout: float = 120.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- inspection -------------------------------------------------------------------------------

    def kubectl(self, *args: str) -> str:
        from kontainers.cluster import build

        binary = str(build.bin_dir() / "kubectl")
        return subprocess.run([binary, "--kubeconfig", self.kubeconfig, *args], check=True, capture_output=True,
                              text=True).stdout

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def component_pid(self, name: str) -> int | None:
        """The pid (= process group) of the `kontainers <name>` child of `kontainers dev`."""
        assert self.proc is not None
        for pid, argv in children(self.proc.pid):
            while argv and not argv[-1]:
                argv = argv[:-1]  # /proc/<pid>/cmdline ends with a NUL
            if argv and argv[-1] == name.encode():
                return pid
        return None

    def operator_pid(self) -> int | None:
        return self.component_pid("operator")

    def operator_log(self) -> Path:
        return self.state / "logs" / "operator.log"


def _supervised_dev(argv: list[str]) -> int:
    """`kontainers dev` whose operator is started again whenever it exits (see the module docstring)."""
    from kontainers.cluster import dev

    restarts = 0
    original = dev.DevStack.check_alive

    def check_alive(self: dev.DevStack) -> None:
        nonlocal restarts
        for component in self.components:
            if component.name == "operator" and component.exit_code() is not None:
                restarts += 1
                with open(component.log, "ab") as log:
                    log.write(f"### restart {restarts} after exit {component.exit_code()}\n".encode())
                component.start()
        original(self)

    dev.DevStack.check_alive = check_alive
    return dev.main(argv)


if __name__ == "__main__":
    if sys.argv[1:2] != ["dev"]:
        raise SystemExit("usage: devstack.py dev <kontainers dev flags> (used by the bench scripts)")
    sys.exit(_supervised_dev(sys.argv[2:]))
