"""`kontainers dev --state-dir DIR`: the whole product on this machine, for trying it and for tests.

Starts the local control plane (etcd, kube-apiserver, controller-manager, scheduler) with a real
node (containerd, kubelet, CNI bridge, kube-router; the locally built images imported), installs
the Container CRD, runs `kontainers egress`, `kontainers operator` and `kontainers gateway` as child
processes, and creates a tenant namespace (Pod Security `restricted`) with an API key. Sandboxes
run on the real node; the egress proxy listens on this host's address on the pods' bridge.

Where this machine cannot run a real node (not root, no cgroups or overlayfs, packages missing),
or with `--fake-nodes`, kwok's fake node takes the pods instead and the dev node agent runs a real
files sidecar for each (kwok pods run nothing). When the gateway answers /readyz it writes, in this
order:

    DIR/kubeconfig    admin kubeconfig of the control plane
    DIR/env           OPENAI_BASE_URL=…/v1, OPENAI_API_KEY=…, KUBECONFIG=… (their presence = ready)

and runs until SIGTERM/SIGINT, then stops everything (no process left) and exits 0.

Before it starts anything (`preflight`) it exits 1 with a message naming the flag to change when
a port it will listen on is taken (`--port`, `--metrics-port`, and on fake nodes `--sidecar-port`
on the pod addresses), when another instance uses DIR, when another instance runs this
machine's one real node (`/run/lock/kontainers-real-node.lock`; `--fake-nodes` runs beside it),
or when the fake nodes' pod range is in use (`--pod-cidr 127.N.0.0/16`, one N per instance).
Port 0 picks a free port (the gateway metrics port does by default); the ready message prints
both URLs. A process counts as ready only when its own socket answers (`Component.listens_on`),
never whatever else holds the port. Both files are
removed on the way out. Logs: DIR/logs/{egress,operator,gateway}.log, DIR/cluster/logs/, and each
pod's sidecar log under DIR/pods/<namespace>/<pod>/. The API key is kept in DIR/apikey (mode 0600), so a
restart with the same DIR keeps both the containers and the key (their pods are recreated, empty).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from kontainers.cluster import build, node
from kontainers.cluster.launcher import ControlPlane, ControlPlaneError, free_port, hold_pod_cidr, node_cidrs
from kontainers.cluster.nodeagent import DevNodeAgent, kontainers_command
from kontainers.cluster.process import (Component, LockBusy, answers, bind_error, describe_pids, hold_lock,
                                        listener_pids)
from kontainers.gateway import apikeys
from kontainers.gateway.auth import key_hash
from kontainers.kube import api_client
from kontainers.observability import setup_logging
from kontainers.resources import names
from kontainers.resources.model import MEMORY_LIMITS

log = logging.getLogger("kontainers.dev")

KEYS_SECRET = "kontainers-api-keys"
SYSTEM_NAMESPACE = "kontainers-system"  # where the keys Secret lives, as in an installation
CRD_FILE = Path(__file__).resolve().parents[3] / "crds" / f"{names.CRD_NAME}.yaml"
CHART_DIR = Path(__file__).resolve().parents[3] / "charts" / "kontainers"
RELEASE = "kontainers"  # the chart names its objects kontainers-<component>
FILES_CLAIM = "kontainers-files"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


class DevError(RuntimeError):
    """Something of the local stack failed to come up; the message says what and where to look."""


class DevStack:
    """Everything `kontainers dev` runs on top of a started control plane."""

    def __init__(self, args: argparse.Namespace, control_plane: ControlPlane) -> None:
        self.args = args
        self.state_dir: Path = args.state_dir
        self.logs_dir = self.state_dir / "logs"
        self.control_plane = control_plane
        self.kubeconfig = str(control_plane.kubeconfig)
        self.gateway_port = args.port or free_port()
        self.base_url = f"http://127.0.0.1:{self.gateway_port}/v1"
        # Not the product's default (9090): two instances, or a test session's gateway, may run here.
        self.metrics_port = args.metrics_port or free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.components: list[Component] = []
        self.agent: DevNodeAgent | None = None

    # --- startup ----------------------------------------------------------------------------------

    async def start(self) -> str:
        """Bring everything up; returns the API key."""
        await self._install_crd()
        api = await api_client(self.kubeconfig)
        async with api:
            await self._namespace(api, SYSTEM_NAMESPACE, {})
            await self._namespace(api, self.args.tenant, RESTRICTED)
            api_key = await self._api_key(api)
        if self.control_plane.node and CHART_DIR.is_dir():
            await self._install_chart()
        else:
            await self._run_processes()
        return api_key

    async def _install_chart(self) -> None:
        """The chart with the locally built images, as `helm install` on a user's cluster: the
        operator, gateway and egress proxy run as pods on the real node; the gateway is reached
        through `kubectl port-forward` on 127.0.0.1."""
        node_images = self.control_plane.images
        assert node_images is not None
        await self._kubectl("apply", "-f", "-", input=json.dumps(self._files_volume()))
        repository, tag = node_images.kontainers.name.rsplit(":", 1)
        values = {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},  # imported, never pulled
            "sandbox": {"image": node_images.sandbox.name, "sidecarPort": self.args.sidecar_port},
            "files": {"persistence": {"existingClaim": FILES_CLAIM}},
        }
        values_file = self.state_dir / "values.yaml"
        values_file.write_text(json.dumps(values, indent=2))  # JSON is YAML
        started = time.monotonic()
        log.info("installing the chart into %s (helm upgrade --install --wait)", SYSTEM_NAMESPACE)
        await self._run(str(self.control_plane.bin_dir / "helm"), "--kubeconfig", self.kubeconfig, "upgrade",
                        "--install", RELEASE, str(CHART_DIR), "--namespace", SYSTEM_NAMESPACE, "--take-ownership",
                        "-f", str(values_file), "--wait", "--timeout", "600s")
        log.info("kontainers pods ready in %.1fs", time.monotonic() - started)
        forwards = [self._start_component(name, [
            str(self.control_plane.bin_dir / "kubectl"), "--kubeconfig", self.kubeconfig, "-n", SYSTEM_NAMESPACE,
            "port-forward", "--address", "127.0.0.1", f"service/{service}", f"{port}:{target}"], {})
            for name, service, port, target in (("port-forward", f"{RELEASE}-gateway", self.gateway_port, "http"),
                                                ("metrics port-forward", f"{RELEASE}-gateway-metrics",
                                                 self.metrics_port, "metrics"))]
        await self._wait_ready(f"http://127.0.0.1:{self.gateway_port}/readyz", "gateway (through port-forward)",
                               forwards[0], "--port")
        await self._wait_ready(f"http://127.0.0.1:{self.metrics_port}/readyz", "gateway metrics (through port-forward)",
                               forwards[1], "--metrics-port")

    def _files_volume(self) -> dict:
        """The Files store's volume: a directory of the state dir (no volume provisioner here)."""
        store = self.state_dir / "files-store"
        store.mkdir(exist_ok=True)
        os.chown(store, 10001, 10001)  # the image's uid
        return {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "kontainers-dev-files"},
             "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                      "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(store), "type": "Directory"},
                      "claimRef": {"namespace": SYSTEM_NAMESPACE, "name": FILES_CLAIM}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": FILES_CLAIM, "namespace": SYSTEM_NAMESPACE},
             "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": "kontainers-dev-files",
                      "resources": {"requests": {"storage": "10Gi"}}}},
        ]}

    async def _run_processes(self) -> None:
        """Fake nodes: the operator, gateway and egress proxy as local processes, and the dev node
        agent running each kwok pod's files sidecar."""
        # The egress proxy publishes its CA in SYSTEM_NAMESPACE; allowlist sandboxes wait for it.
        egress_ops_port = free_port()
        egress = self._start_kontainers("egress", {
            "KONTAINERS_EGRESS_KUBECONFIG": self.kubeconfig,
            "KONTAINERS_EGRESS_NAMESPACE": SYSTEM_NAMESPACE,
            "KONTAINERS_EGRESS_PORT": str(free_port()),
            "KONTAINERS_EGRESS_OPS_PORT": str(egress_ops_port),
            "KONTAINERS_EGRESS_CONFDIR": str(self.state_dir / "egress"),
        })
        await self._wait_ready(f"http://127.0.0.1:{egress_ops_port}/readyz", "egress proxy", egress)
        operator_ops_port = free_port()
        operator = self._start_kontainers("operator", {
            "KONTAINERS_OPERATOR_KUBECONFIG": self.kubeconfig,
            "KONTAINERS_OPERATOR_EGRESS_NAMESPACE": SYSTEM_NAMESPACE,
            "KONTAINERS_OPERATOR_SIDECAR_PORT": str(self.args.sidecar_port),
            "KONTAINERS_OPERATOR_OPS_HOST": "127.0.0.1",
            "KONTAINERS_OPERATOR_OPS_PORT": str(operator_ops_port),
            "KONTAINERS_OPERATOR_STANDALONE": "true",  # one replica: no peering object needed
            # kwok marks pods Ready at once; `running` waits for the node agent's sidecar instead.
            "KONTAINERS_OPERATOR_SIDECAR_READINESS_GATE": "true",
            "KONTAINERS_OPERATOR_WARM_POOL": json.dumps(self.args.warm_pool),
            # The dev tenant's first create is warm too.
            "KONTAINERS_OPERATOR_WARM_POOL_NAMESPACES": json.dumps([self.args.tenant] if self.args.warm_pool else []),
        })
        gateway = self._start_kontainers("gateway", {
            "KONTAINERS_GATEWAY_HOST": "127.0.0.1",
            "KONTAINERS_GATEWAY_PORT": str(self.gateway_port),
            "KONTAINERS_GATEWAY_METRICS_PORT": str(self.metrics_port),
            "KONTAINERS_GATEWAY_KUBECONFIG": self.kubeconfig,
            "KONTAINERS_GATEWAY_KEYS_NAMESPACE": SYSTEM_NAMESPACE,
            "KONTAINERS_GATEWAY_KEYS_SECRET": KEYS_SECRET,
            "KONTAINERS_GATEWAY_SIDECAR_PORT": str(self.args.sidecar_port),
            "KONTAINERS_FILES_ROOT": str(self.state_dir / "files"),  # the Files API store
        })
        self.agent = DevNodeAgent(self.kubeconfig, self.state_dir, self.args.sidecar_port)
        await self.agent.start()
        await self._wait_ready(f"http://127.0.0.1:{operator_ops_port}/readyz", "operator", operator)
        await self._wait_ready(f"http://127.0.0.1:{self.gateway_port}/readyz", "gateway", gateway, "--port")
        await self._wait_ready(f"http://127.0.0.1:{self.metrics_port}/readyz", "gateway metrics", gateway,
                               "--metrics-port")

    async def _install_crd(self) -> None:
        manifest = CRD_FILE if CRD_FILE.is_file() else None
        if manifest is None:  # installed without the repository: render it from the models
            from kontainers.resources import crd

            manifest = self.state_dir / "crd.yaml"
            manifest.write_text(crd.render())
        await self._kubectl("apply", "--server-side", "--force-conflicts", "-f", str(manifest))
        await self._kubectl("wait", "--for=condition=Established", f"crd/{names.CRD_NAME}", "--timeout=60s")

    async def _kubectl(self, *args: str, input: str | None = None) -> str:
        return await self._run(str(self.control_plane.bin_dir / "kubectl"), "--kubeconfig", self.kubeconfig, *args,
                               input=input)

    @staticmethod
    async def _run(*argv: str, input: str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate(input.encode() if input is not None else None)
        if proc.returncode != 0:
            raise DevError(f"{Path(argv[0]).name} {' '.join(argv[3:])} failed:\n{out.decode(errors='replace')}")
        return out.decode()

    @staticmethod
    async def _namespace(api: client.ApiClient, name: str, labels: dict[str, str]) -> None:
        core = client.CoreV1Api(api)
        body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))
        try:
            await core.create_namespace(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            await core.patch_namespace(name, {"metadata": {"labels": labels}})

    async def _api_key(self, api: client.ApiClient) -> str:
        """The tenant's key (kept in DIR/apikey across restarts), its hash stored for the gateway."""
        key_file = self.state_dir / "apikey"
        api_key = key_file.read_text().strip() if key_file.is_file() else ""
        if not api_key:
            api_key = apikeys.new_api_key()
            write_atomically(key_file, api_key + "\n")
        await apikeys.store_key_hash(api, key_hash(api_key), self.args.tenant, secret_namespace=SYSTEM_NAMESPACE)
        return api_key

    def _start_kontainers(self, command: str, env: dict[str, str]) -> Component:
        return self._start_component(command, kontainers_command(command), env)

    def _start_component(self, name: str, argv: list[str], env: dict[str, str]) -> Component:
        full_env = {**os.environ, "KUBECONFIG": self.kubeconfig, **env}
        component = Component(name, argv, self.logs_dir / f"{name}.log", full_env)
        component.start()
        self.components.append(component)
        log.info("started %s (pid %s), log %s", name, component.pid, component.log)
        return component

    async def _wait_ready(self, url: str, what: str, component: Component, flag: str | None = None,
                          timeout: float = 90.0) -> None:
        """Until `url` answers 200 from `component`: whatever else answers there (a program that
        had the port first) is an error, never "ready"."""
        address = urllib.parse.urlsplit(url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if await asyncio.to_thread(answers, url, 2.0):
                if await asyncio.to_thread(component.listens_on, address.hostname, address.port):
                    return
                self.check_alive()  # it may have just died on "address already in use"
                other = describe_pids(listener_pids(address.hostname, address.port))
                hint = f"; pass {flag} with a free port" if flag else ""
                raise DevError(f"{url} is answered by another program ({other}), not by the {what} "
                               f"this run started (pid {component.pid}){hint}")
            await asyncio.sleep(0.2)
        raise DevError(f"the {what} was not ready at {url} within {timeout:.0f}s")

    # --- running ----------------------------------------------------------------------------------

    def check_alive(self) -> None:
        """Raise (with its log tail) if the operator, the gateway or a control-plane process died."""
        for component in [*self.components, *self.control_plane.components]:
            code = component.exit_code()
            if code is not None:
                raise DevError(f"{component.name} exited ({code}); tail of {component.log}:\n{component.tail()}")

    async def stop(self) -> None:
        if self.agent is not None:
            await self.agent.stop()
            self.agent = None
        for component in self.components:
            component.terminate()
        await asyncio.gather(*(asyncio.to_thread(c.stop) for c in self.components))
        self.components = []




def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def try_it(state_dir: Path, bin_dir: Path, base_url: str, metrics_url: str) -> str:
    env = state_dir / "env"
    return (
        f"kontainers dev is ready: {base_url}\n"
        f"  gateway metrics (no key): {metrics_url}\n"
        f"  set -a; . {shlex.quote(str(env))}; set +a\n"
        f"  {shlex.quote(sys.executable)} -c 'import openai; c = openai.OpenAI(); print(c.containers.create(name=\"hello\"))'\n"
        f"  {shlex.quote(str(bin_dir / 'kubectl'))} get containers -A\n"
        f"Logs in {state_dir / 'logs'}/. Press Ctrl-C (or send SIGTERM) to stop."
    )


async def serve(args: argparse.Namespace, control_plane: ControlPlane) -> int:
    """Start the stack, publish DIR/kubeconfig and DIR/env, run until a signal; always clean up."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stack = DevStack(args, control_plane)
    env_file, kubeconfig = args.state_dir / "env", args.state_dir / "kubeconfig"
    startup = asyncio.create_task(stack.start())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({startup, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not startup.done():
            startup.cancel()
            await asyncio.gather(startup, return_exceptions=True)
            return 0
        api_key = startup.result()
        shutil.copyfile(control_plane.kubeconfig, kubeconfig)
        os.chmod(kubeconfig, 0o600)
        write_atomically(env_file, "".join(
            f"{name}={shlex.quote(value)}\n"
            for name, value in (("OPENAI_BASE_URL", stack.base_url), ("OPENAI_API_KEY", api_key),
                                ("KUBECONFIG", str(kubeconfig)))
        ))
        print(try_it(args.state_dir, control_plane.bin_dir, stack.base_url, stack.metrics_url), flush=True)
        while not stop.is_set():
            stack.check_alive()
            try:  # asyncio.timeout: wait_for (3.11) can swallow a cancellation
                async with asyncio.timeout(1.0):
                    await stop.wait()
            except TimeoutError:
                pass
        print("stopping kontainers dev", flush=True)
        return 0
    finally:
        stopped.cancel()
        env_file.unlink(missing_ok=True)
        kubeconfig.unlink(missing_ok=True)
        await stack.stop()


@dataclass
class Reservation:
    """What `preflight` made sure of and holds until `release()`: this state dir, and the real
    node or the pod address range, are this run's; its ports were free."""

    real_node: bool
    host_lock: object | None = None  # node.take_host_lock()'s, handed to the real node
    locks: list = field(default_factory=list)

    def release(self) -> None:
        for lock in [self.host_lock, *self.locks]:
            if lock is not None:
                lock.close()


def preflight(args: argparse.Namespace) -> Reservation:
    """Before anything starts: fail with a message naming the flag to change when another
    `kontainers dev` (or test session) holds this state dir, the real node or the pod address
    range, or when a port this run listens on is taken."""
    reservation = Reservation(real_node=False)
    holder = f"pid {os.getpid()}, state dir {args.state_dir}"
    try:
        try:
            reservation.locks.append(hold_lock(args.state_dir / "dev.lock", holder))
        except LockBusy as busy:
            raise DevError(f"another kontainers dev uses {args.state_dir} ({busy.holder}): stop it, "
                           "or give this one another --state-dir") from None
        missing = None if args.fake_nodes else node.unavailable_reason(check_lock=False)
        if missing:
            print(f"kontainers dev: no real node on this machine ({missing}); sandboxes go to kwok's fake node "
                  "and the dev node agent runs their files sidecars", file=sys.stderr, flush=True)
        reservation.real_node = not args.fake_nodes and missing is None
        ports = [("127.0.0.1", args.port, "--port"), ("127.0.0.1", args.metrics_port, "--metrics-port")]
        if reservation.real_node:
            try:
                reservation.host_lock = node.take_host_lock(args.state_dir / "cluster" / "node")
            except LockBusy as busy:
                raise DevError(f"a real node already runs on this machine ({busy.holder}), and there can be "
                               "only one per machine: stop that kontainers dev, or run this one with "
                               "--fake-nodes (kwok's fake node)") from None
        else:
            try:
                reservation.locks.append(hold_pod_cidr(args.pod_cidr, holder))
            except LockBusy as busy:
                raise DevError(f"the pod address range {args.pod_cidr} is in use ({busy.holder}): pass "
                               "--pod-cidr 127.N.0.0/16 with another N") from None
            # Sidecars listen on the pod IPs: a server on every address at that port blocks them all.
            ports.append((node.node_ip(node_cidrs(args.pod_cidr, 1)[0]), args.sidecar_port, "--sidecar-port"))
        for host, port, flag in ports:
            if port and (why := bind_error(host, port)):
                raise DevError(f"port {port} on {host} is taken ({why}; held by "
                               f"{describe_pids(listener_pids(host, port))}): pass {flag} with a free port"
                               + (" (0: any free port)" if flag != "--sidecar-port" else ""))
    except BaseException:
        reservation.release()
        raise
    return reservation


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def warm_pool_sizes(text: str) -> dict[str, int]:
    """`1g=2,4g=1` → {"1g": 2, "4g": 1} (sizes with 0 left out)."""
    sizes: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        size, _, count = item.partition("=")
        if size not in MEMORY_LIMITS or not count.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: expected SIZE=N with SIZE one of {', '.join(MEMORY_LIMITS)}")
        if int(count):
            sizes[size] = int(count)
    return sizes


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kontainers dev", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, required=True, help="everything it writes lives here")
    parser.add_argument("--port", type=int, default=8080, help="gateway port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--metrics-port", type=int, default=0,
                        help="gateway metrics port on 127.0.0.1 (default 0: any free port, printed when ready)")
    parser.add_argument("--sidecar-port", type=int, default=8081, help="port of the files sidecars on pod IPs")
    parser.add_argument("--pod-cidr", default="127.66.0.0/16",
                        help="fake nodes: the 127.N.0.0/16 their pods get IPs from (another N per instance)")
    parser.add_argument("--tenant", default="dev", help="namespace of the tenant the API key belongs to")
    parser.add_argument("--bin-dir", type=Path, help="prebuilt control-plane binaries (default: the pinned build)")
    parser.add_argument("--fake-nodes", action="store_true",
                        help="kwok's fake node and the dev node agent instead of a real node")
    parser.add_argument("--warm-pool", type=warm_pool_sizes, default="1g=2", metavar="SIZE=N[,SIZE=N]",
                        help="ready sandbox pods kept per memory size (default 1g=2; 1g=0: none)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    args.state_dir = args.state_dir.resolve()
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level, json=False)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        reservation = preflight(args)
    except (DevError, ValueError) as error:
        print(f"kontainers dev: {error}", file=sys.stderr)
        return 1
    for stale in ("env", "kubeconfig"):  # left by a run that was killed: not ready yet
        (args.state_dir / stale).unlink(missing_ok=True)
    # Until the event loop takes over, SIGTERM behaves like Ctrl-C so startup unwinds cleanly.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    real_node = reservation.real_node
    control_plane = ControlPlane(args.state_dir / "cluster", args.bin_dir, nodes=0 if real_node else 1,
                                 pod_cidr=args.pod_cidr, real_node=real_node, host_lock=reservation.host_lock)
    try:
        control_plane.start()
        return asyncio.run(serve(args, control_plane))
    except KeyboardInterrupt:
        return 0
    except (ControlPlaneError, build.BuildError, DevError) as error:
        print(f"kontainers dev: {error}", file=sys.stderr)
        return 1
    except Exception:
        log.exception("kontainers dev failed")
        return 1
    finally:
        # No interruption half-way through stopping: that is how processes get orphaned.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        control_plane.stop()
        reservation.release()
