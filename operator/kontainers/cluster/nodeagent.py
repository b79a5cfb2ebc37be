"""The dev node agent — FOR LOCAL DEVELOPMENT AND TESTS ONLY, never part of an installation.

kwok plays the kubelet of fake nodes: pods become Running with a 127.66.x.y IP, but no process
runs in them. So that file calls work end to end anyway, this agent does the one kubelet job
kontainers needs: for every Running pod labelled app.kubernetes.io/managed-by=kontainers it starts
a real `kontainers sidecar` bound to the pod's IP (any 127.x address is bindable on Linux
loopback), with the token the pod's `files` container would get (env KONTAINERS_SIDECAR_TOKEN,
secretKeyRef to the pod's sidecar Secret) and a root of its own playing the pod's emptyDir:

    <state_dir>/pods/<namespace>/<pod>/data      the pod's /mnt/data
    <state_dir>/pods/<namespace>/<pod>/skills    the pod's /mnt/skills
    <state_dir>/pods/<namespace>/<pod>/sidecar.log

When the pod goes away the process is stopped and the directory removed, as an emptyDir would be.
A sidecar that crashes is restarted (restartPolicy Always). Tokens are never logged.

Use it as an async context manager, or `await start()` / `await stop()`; `await run()` runs until
cancelled. `start()` returns once the existing pods have been listed and their sidecars launched;
`wait_for_sidecar(namespace, pod)` waits until one answers /healthz.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kontainers.cluster.process import Component, answers
from kontainers import kube
from kontainers.kube import api_client
from kontainers.resources import names

log = logging.getLogger("kontainers.devnodeagent")

FILES_CONTAINER = "files"
TOKEN_ENV = "KONTAINERS_SIDECAR_TOKEN"
RESYNC_SECONDS = 1.0  # how often crashed sidecars and pods whose Secret was missing are retried

# Children started through this die with their parent (prctl PR_SET_PDEATHSIG = 1, SIGTERM = 15),
# so a killed agent or `kontainers dev` leaves no process holding a pod IP. Linux only, like the
# 127.x pod IPs themselves. One line, because it heads every component log.
_BOOTSTRAP = (
    "import ctypes, os, sys; ctypes.CDLL(None).prctl(1, 15); "
    "os.getppid() == int(sys.argv[1]) or sys.exit('parent exited before the child started'); "
    "from kontainers.cli import main; sys.exit(main(sys.argv[2:]))"
)


def kontainers_command(*args: str) -> list[str]:
    """argv running `kontainers <args>` with this interpreter, tied to this process's life."""
    return [sys.executable, "-c", _BOOTSTRAP, str(os.getpid()), *args]


@dataclass(frozen=True)
class PodSidecar:
    """What the sidecar of one pod needs: who the pod is and where its token lives."""

    namespace: str
    pod: str
    uid: str
    ip: str
    secret_name: str | None  # None when the token is a literal value in the pod spec
    secret_key: str | None
    literal_token: str | None = None
    gated: bool = False  # the pod waits for our CONDITION_SIDECAR_READY before it is Ready

    def __repr__(self) -> str:  # never print a token, even by accident
        return f"PodSidecar({self.namespace}/{self.pod} uid={self.uid} ip={self.ip})"


def desired_sidecar(pod: client.V1Pod) -> PodSidecar | None:
    """The sidecar a pod should have right now, or None (not running, no IP, no files container).

    Only kwok's pods qualify: their loopback IPs can be bound here, while a real node's pods run
    their own sidecar container."""
    meta, status, spec = pod.metadata, pod.status, pod.spec
    if meta.deletion_timestamp is not None or status is None or status.phase != "Running" or not status.pod_ip:
        return None
    if not ipaddress.ip_address(status.pod_ip).is_loopback:
        return None
    files = next((c for c in (spec.containers or []) if c.name == FILES_CONTAINER), None)
    env = next((e for e in (files.env or []) if e.name == TOKEN_ENV), None) if files else None
    if env is None:
        return None
    ref = env.value_from.secret_key_ref if env.value_from is not None else None
    if ref is None and not env.value:
        return None
    return PodSidecar(
        namespace=meta.namespace, pod=meta.name, uid=meta.uid, ip=status.pod_ip,
        secret_name=ref.name if ref else None, secret_key=ref.key if ref else None,
        literal_token=None if ref else env.value,
        gated=any(g.condition_type == names.CONDITION_SIDECAR_READY for g in spec.readiness_gates or ()),
    )


@dataclass
class RunningSidecar:
    want: PodSidecar
    component: Component
    url: str
    data_dir: Path
    ready: asyncio.Event
    started_at: float


class DevNodeAgent:
    """Runs a real files sidecar for each Running kontainers pod (dev and test only)."""

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str] | None,
        state_dir: str | os.PathLike[str],
        sidecar_port: int = 8081,
        *,
        sidecar_env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = str(kubeconfig) if kubeconfig else None
        self.state_dir = Path(state_dir)
        self.sidecar_port = sidecar_port
        self.sidecar_env = dict(sidecar_env or {})  # e.g. KONTAINERS_SIDECAR_MAX_UPLOAD_BYTES
        self._api: client.ApiClient | None = None
        self._desired: dict[tuple[str, str], PodSidecar] = {}
        self._running: dict[tuple[str, str], RunningSidecar] = {}
        self._wake = asyncio.Event()
        # start() and the reconcile loop both reconcile; one at a time, or both would launch a
        # sidecar for the same pod while the first awaits its token.
        self._reconciling = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._synced = asyncio.Event()
        self._failures: dict[tuple[str, str], str] = {}
        self._backoff: dict[tuple[str, str], tuple[int, float]] = {}  # crashes in a row, next start time

    # --- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> DevNodeAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 30.0) -> None:
        """Watch pods; return once the existing ones are listed and their sidecars launched."""
        self._api = await api_client(self.kubeconfig)
        log.info("dev node agent starting (dev/test only: runs files sidecars for kwok pods)",
                 extra={"state_dir": str(self.state_dir)})
        self._tasks = [asyncio.create_task(self._watch_pods()), asyncio.create_task(self._reconcile_loop())]
        waiter = asyncio.ensure_future(self._synced.wait())
        done, _ = await asyncio.wait([waiter, *self._tasks], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            await self.stop()
            failed = next((t for t in done if t.exception() is not None), None)
            if failed is not None:
                raise RuntimeError("dev node agent failed to start") from failed.exception()
            raise TimeoutError("dev node agent could not list pods in time")
        await self._reconcile_all()

    async def stop(self) -> None:
        """Stop watching and stop every sidecar; idempotent."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await asyncio.gather(*(self._stop_sidecar(key, remove_data=False) for key in list(self._running)))
        if self._api is not None:
            await self._api.close()
            self._api = None
        log.info("dev node agent stopped")

    async def run(self) -> None:
        """Start, then serve until cancelled; always stops the sidecars."""
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    # --- inspection (fixtures, tests, `kontainers dev`) ---------------------------------------------

    def pod_dir(self, namespace: str, pod: str) -> Path:
        return self.state_dir / "pods" / namespace / pod

    def data_dir(self, namespace: str, pod: str) -> Path:
        """The directory playing the pod's /mnt/data."""
        return self.pod_dir(namespace, pod) / "data"

    def sidecar(self, namespace: str, pod: str) -> RunningSidecar | None:
        return self._running.get((namespace, pod))

    def pids(self) -> list[int]:
        return [s.component.pid for s in self._running.values() if s.component.pid and s.component.running()]

    async def wait_for_sidecar(self, namespace: str, pod: str, timeout: float = 30.0) -> RunningSidecar:
        """The sidecar of a pod once it answers /healthz."""
        deadline = time.monotonic() + timeout
        while True:
            running = self._running.get((namespace, pod))
            if running is not None and running.ready.is_set():
                return running
            if time.monotonic() > deadline:
                why = self._failures.get((namespace, pod), "the pod is not Running with an IP, or has no files container")
                raise TimeoutError(f"no sidecar for pod {namespace}/{pod} after {timeout:.0f}s: {why}")
            await asyncio.sleep(0.05)

    # --- watching -----------------------------------------------------------------------------------

    async def _watch_pods(self) -> None:
        core = client.CoreV1Api(self._api)
        await kube.list_watch(core.list_pod_for_all_namespaces, what="pods (dev node agent)", typed=True,
                              on_list=self._listed, on_event=self._pod_event,
                              label_selector=f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}")

    def _listed(self, pods: list[client.V1Pod]) -> None:
        self._desired = {}
        for pod in pods:
            self._observe(pod)
        self._synced.set()
        self._wake.set()

    def _pod_event(self, kind: str, pod: client.V1Pod) -> None:
        if kind == "DELETED":
            self._desired.pop((pod.metadata.namespace, pod.metadata.name), None)
        elif kind in ("ADDED", "MODIFIED"):
            self._observe(pod)
        self._wake.set()

    def _observe(self, pod: client.V1Pod) -> None:
        key = (pod.metadata.namespace, pod.metadata.name)
        want = desired_sidecar(pod)
        if want is None:
            self._desired.pop(key, None)
        else:
            self._desired[key] = want

    # --- reconciling ----------------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            try:  # asyncio.timeout: wait_for (3.11) can swallow a cancellation
                async with asyncio.timeout(RESYNC_SECONDS):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self._reconcile_all()

    async def _reconcile_all(self) -> None:
        async with self._reconciling:
            for key in set(self._desired) | set(self._running):
                try:
                    await self._reconcile(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dev node agent: reconciling a pod failed", extra={"pod": "/".join(key)})

    async def _reconcile(self, key: tuple[str, str]) -> None:
        want = self._desired.get(key)
        running = self._running.get(key)
        if running is not None:
            if want is None or want.uid != running.want.uid or want.ip != running.want.ip:
                # Gone (or replaced by a new pod of the same name): its emptyDir goes with it.
                gone = want is None or want.uid != running.want.uid
                await self._stop_sidecar(key, remove_data=gone)
                running = None
            elif running.component.exit_code() is not None:
                # Like a kubelet's CrashLoopBackOff: 1 s, 2 s, 4 s … 30 s between restarts.
                crashes = self._backoff.get(key, (0, 0.0))[0] + (0 if running.ready.is_set() else 1)
                delay = min(2.0 ** max(crashes - 1, 0), 30.0)
                self._backoff[key] = (crashes, time.monotonic() + delay)
                log.warning("dev node agent: sidecar exited; restarting",
                            extra={"pod": "/".join(key), "exit_code": running.component.exit_code(),
                                   "restart_in_seconds": delay, "log_tail": running.component.tail(5)})
                await self._stop_sidecar(key, remove_data=False)
                running = None
        if want is not None and running is None:
            await self._start_sidecar(key, want)

    async def _start_sidecar(self, key: tuple[str, str], want: PodSidecar) -> None:
        if time.monotonic() < self._backoff.get(key, (0, 0.0))[1]:
            return
        try:
            token = await self._token(want)
        except ApiException as exc:
            self._failures[key] = f"reading the sidecar Secret failed ({exc.status})"
            return  # retried on the next resync: the operator may not have written it yet
        pod_dir = self.pod_dir(*key)
        marker = pod_dir / "uid"
        if marker.exists() and marker.read_text() != want.uid:
            for volume in ("data", "skills"):  # a new pod under an old name starts empty
                shutil.rmtree(pod_dir / volume, ignore_errors=True)
        pod_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text(want.uid)
        argv = kontainers_command(
            "sidecar", "--host", want.ip, "--port", str(self.sidecar_port), "--root", str(pod_dir / "data"),
            "--skills-root", str(pod_dir / "skills"),
        )
        env = {**os.environ, **self.sidecar_env, TOKEN_ENV: token}
        component = Component(f"sidecar {want.namespace}/{want.pod}", argv, pod_dir / "sidecar.log", env)
        component.start()
        url = f"http://{want.ip}:{self.sidecar_port}"
        running = RunningSidecar(want, component, url, pod_dir / "data", asyncio.Event(), time.monotonic())
        self._running[key] = running
        self._failures.pop(key, None)
        log.info("dev node agent: started a files sidecar",
                 extra={"pod": "/".join(key), "url": url, "pid": component.pid})
        asyncio.create_task(self._await_ready(running))

    async def _await_ready(self, running: RunningSidecar) -> None:
        deadline = time.monotonic() + 30
        while running.component.running() and time.monotonic() < deadline:
            if await asyncio.to_thread(answers, f"{running.url}/healthz"):
                running.ready.set()
                self._backoff.pop((running.want.namespace, running.want.pod), None)
                if running.want.gated:
                    await self._mark_sidecar_ready(running.want)
                return
            await asyncio.sleep(0.05)
        self._failures[(running.want.namespace, running.want.pod)] = (
            f"the sidecar did not answer /healthz; log tail:\n{running.component.tail(10)}"
        )

    async def _mark_sidecar_ready(self, want: PodSidecar) -> None:
        """Set the pod's readiness gate: its sidecar answers. The uid in the patch makes the API
        server refuse it for another pod of the same name."""
        condition = {"type": names.CONDITION_SIDECAR_READY, "status": "True",
                     "lastTransitionTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        for attempt in range(5):
            try:
                await client.CoreV1Api(self._api).patch_namespaced_pod_status(
                    want.pod, want.namespace, {"metadata": {"uid": want.uid}, "status": {"conditions": [condition]}})
                return
            except ApiException as exc:
                if exc.status in (404, 409) or attempt == 4:  # gone, or another pod by now
                    self._failures[(want.namespace, want.pod)] = (
                        f"setting {names.CONDITION_SIDECAR_READY} failed ({exc.status})")
                    log.warning("dev node agent: could not set the sidecar readiness gate",
                                extra={"pod": f"{want.namespace}/{want.pod}", "status": exc.status})
                    return
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _stop_sidecar(self, key: tuple[str, str], *, remove_data: bool) -> None:
        running = self._running.pop(key, None)
        if remove_data:
            self._backoff.pop(key, None)
        if running is not None:
            await asyncio.to_thread(running.component.stop, 5.0)
            log.info("dev node agent: stopped a files sidecar", extra={"pod": "/".join(key)})
        if remove_data:
            await asyncio.to_thread(shutil.rmtree, self.pod_dir(*key), True)

    async def _token(self, want: PodSidecar) -> str:
        if want.literal_token is not None:
            return want.literal_token
        secret = await client.CoreV1Api(self._api).read_namespaced_secret(want.secret_name, want.namespace)
        value = (secret.data or {}).get(want.secret_key)
        if value is None:
            raise ApiException(status=404, reason=f"key {want.secret_key!r} missing from the Secret")
        return base64.b64decode(value).decode()




def main(argv: list[str]) -> int:
    """`python -m kontainers.cluster.nodeagent --kubeconfig K --state-dir D [--sidecar-port P]`:
    run the dev node agent alone until SIGTERM/SIGINT (fixtures run it this way)."""
    import argparse
    import signal

    from kontainers.observability import setup_logging

    parser = argparse.ArgumentParser(prog="kontainers.cluster.nodeagent", description="dev/test only: " + __doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--sidecar-port", type=int, default=8081)
    args = parser.parse_args(argv)
    setup_logging("INFO")

    async def serve() -> None:
        task = asyncio.current_task()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, task.cancel)
        try:
            await DevNodeAgent(args.kubeconfig, args.state_dir, args.sidecar_port).run()
        except asyncio.CancelledError:
            pass

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
