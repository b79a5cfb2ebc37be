"""The local Kubernetes control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok.

Every component listens on loopback only, on free ports. kwok plays the kubelet of fake Nodes
whose pod CIDRs are /24s of `pod_cidr` (127.66.0.0/16 by default), so a scheduled pod becomes
Running with a loopback IP that a local process can bind.

    with ControlPlane(Path(".state")) as cp:      # builds the binaries if needed
        subprocess.run([cp.bin_dir / "kubectl", "--kubeconfig", cp.kubeconfig, "get", "nodes"])

`kontainers cluster --state-dir DIR` runs it in the foreground until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import atexit
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from kontainers.cluster import build, images, kubeconfig, node, pki
from kontainers.cluster.process import Component, free_port, hold_lock, rss_bytes

# A fixed issuer (not one naming the port) keeps tokens valid across restarts on new ports.
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
NODE_IP = "127.0.0.1"


class ControlPlaneError(RuntimeError):
    """The control plane failed to start; the message carries the failing component's log tail."""


# Pod IPs of fake nodes are bound by local processes (the dev node agent's sidecars): each
# 127.N.0.0/16 in use on this machine is held by a lock here (`kontainers dev`, test sessions).
POD_CIDR_LOCKS = Path(os.environ.get("XDG_RUNTIME_DIR") or "/tmp") / "kontainers-pod-cidrs"


def hold_pod_cidr(pod_cidr: str, holder: str):
    """The lock of `pod_cidr` (a 127.N.0.0/16), held until the returned file is closed; LockBusy
    when another `kontainers dev` or test session of this machine uses that range."""
    network = ipaddress.ip_network(pod_cidr)
    if network.prefixlen != 16 or not network.subnet_of(ipaddress.ip_network("127.0.0.0/8")):
        raise ValueError(f"pod CIDR {pod_cidr} must be a 127.N.0.0/16 (a local, loopback range)")
    return hold_lock(POD_CIDR_LOCKS / f"127.{network.network_address.packed[1]}.lock", holder)


def node_cidrs(pod_cidr: str, nodes: int) -> list[str]:
    """One /24 of `pod_cidr` per node, in order."""
    network = ipaddress.ip_network(pod_cidr)
    if network.version != 4 or network.prefixlen > 24:
        raise ValueError(f"pod CIDR {pod_cidr} must be IPv4 and at least a /24")
    subnets = network.subnets(new_prefix=24)
    cidrs = [str(next(subnets, None) or "") for _ in range(nodes)]
    if not all(cidrs):
        raise ValueError(f"pod CIDR {pod_cidr} holds fewer than {nodes} /24 subnets")
    return cidrs


class ControlPlane:
    """A control plane whose files (PKI, etcd data, logs, kubeconfig) live in `state_dir`.

    `start()` writes `kubeconfig` last, once the API server is ready, the controllers and
    the scheduler are healthy and every node is Ready; `stop()` removes it first. `stop()` is
    idempotent and also runs at interpreter exit. A state dir can be reused: certificates and
    etcd data are kept.
    """

    def __init__(
        self,
        state_dir: Path,
        bin_dir: Path | None = None,
        nodes: int = 1,
        pod_cidr: str = "127.66.0.0/16",
        *,
        real_node: bool = False,
        host_lock: object | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.bin_dir = Path(bin_dir) if bin_dir else build.bin_dir()
        self.pod_cidr = pod_cidr
        self.node_cidrs = dict(zip((f"kwok-node-{i}" for i in range(nodes)), node_cidrs(pod_cidr, nodes)))
        self.startup_timeout = startup_timeout
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.logs_dir = self.state_dir / "logs"
        self.pki_dir = self.state_dir / "pki"
        self.server = ""
        self.components: list[Component] = []
        # Beside fake nodes the real one is tainted: it takes only the pods that ask for it, while
        # the fake ones carry the thousands of pods of scale tests.
        # host_lock: node.take_host_lock()'s, when the caller took it before anything else.
        self.node = node.RealNode(self.state_dir, self.bin_dir, self.logs_dir, tainted=nodes > 0,
                                  host_lock=host_lock) if real_node else None
        self._node_certs: node.NodeCerts | None = None
        self.images: images.NodeImages | None = None  # what the real node's pods run
        self._ssl: ssl.SSLContext | None = None
        self._deadline = 0.0

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> "ControlPlane":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.unlink(missing_ok=True)  # its presence means "ready"
        self._kill_stale_processes()
        self.bin_dir = build.ensure_built(self.bin_dir)
        if self.node:
            self.node.bin_dir = self.bin_dir
            self.images = images.ensure_images()
        atexit.register(self.stop)
        self._deadline = time.monotonic() + self.startup_timeout
        for attempt in (1, 2):
            try:
                self._start_all()
                return
            except ControlPlaneError as error:
                self.stop()
                # A free port can be taken between probing and binding it: try new ports once.
                if attempt == 2 or "address already in use" not in str(error):
                    raise
                atexit.register(self.stop)
            except BaseException:
                self.stop()
                raise

    def stop(self) -> None:
        """Stop every component (clients first, etcd last); no process is left behind."""
        atexit.unregister(self.stop)
        if self.components:  # the kubeconfig means "ready": withdraw it before anything stops
            self.kubeconfig.unlink(missing_ok=True)
        by_stage = [
            [c for c in self.components if c.name in {"kwok", "kube-scheduler", "kube-controller-manager"}],
            [c for c in self.components if c.name == "kube-apiserver"],
            [c for c in self.components if c.name == "etcd"],
        ]
        for index, stage in enumerate(by_stage):
            if index == 1 and self.node:  # the node's pods and processes go while the API server is up
                self.node.stop()
            for component in stage:
                component.terminate()
            for component in stage:
                component.stop()
        self.components = []
        (self.state_dir / "pids.json").unlink(missing_ok=True)

    def rss(self) -> dict[str, tuple[int, int]]:
        """(current, peak) resident memory in bytes of each running component."""
        components = self.components + (self.node.components if self.node else [])
        return {c.name: rss_bytes(c.pid) for c in components if c.pid and c.running()}

    # --- startup ---------------------------------------------------------------------------

    def _start_all(self) -> None:
        etcd_port, etcd_peer_port, api_port, cm_port, scheduler_port = (free_port() for _ in range(5))
        if self.node:  # pods reach the API server too: it listens on the node's bridge address
            self.node.prepare()
        self.server = f"https://{self.api_address}:{api_port}"
        certs = self._write_pki()

        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._launch("etcd", self._etcd_args(etcd_url, f"http://127.0.0.1:{etcd_peer_port}"))
        self._wait("etcd", lambda: self._get(f"{etcd_url}/health", verify=False) is not None)

        self._launch("kube-apiserver", self._apiserver_args(etcd_url, api_port, certs))
        self._wait("kube-apiserver", lambda: self._get_text(f"{self.server}/readyz") == "ok")
        self._create_nodes()
        self._drop_pods_of_a_previous_run()

        self._launch("kube-controller-manager", self._controller_manager_args(cm_port, certs))
        self._launch("kube-scheduler", self._scheduler_args(scheduler_port, certs))
        self._launch("kwok", self._kwok_args(certs), env={**os.environ, "KWOK_WORKDIR": str(self.state_dir / "kwok")})

        self._wait("kube-controller-manager", lambda: self._healthy(cm_port))
        self._wait("kube-scheduler", lambda: self._healthy(scheduler_port))
        if self.node:
            assert self._node_certs and self.images
            try:
                self.node.start(self.server, certs["ca"].cert, self._node_certs, SERVICE_CLUSTER_IP_RANGE, self.images)
            except (OSError, RuntimeError, subprocess.CalledProcessError) as error:
                detail = getattr(error, "stderr", None) or ""
                raise ControlPlaneError(f"the real node did not start: {error} {detail}".strip()) from error
            self._write_pids()
        self._wait("kwok", self._nodes_ready)
        if self.node:
            try:
                self.node.start_firewall()
            except RuntimeError as error:
                raise ControlPlaneError(f"the real node did not start: {error}") from error
            self._write_pids()
        # Pods can be created in a namespace only once its "default" ServiceAccount exists.
        self._wait("kube-controller-manager", lambda: self._get(
            f"{self.server}/api/v1/namespaces/default/serviceaccounts/default") is not None)

        kubeconfig.write(self.kubeconfig, kubeconfig.render(self.server, certs["ca"].cert, certs["admin"], user="admin"))

    def _write_pki(self) -> dict[str, pki.CertPair]:
        ca = pki.CertificateAuthority(self.pki_dir)
        certs = {
            "ca": pki.CertPair(ca.cert_path, ca.key_path),
            "sa": pki.service_account_keys(self.pki_dir),
            "apiserver": ca.issue(
                "apiserver" if self.api_address == NODE_IP else f"apiserver-{self.api_address}",
                "kube-apiserver",
                dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                           "kubernetes.default.svc.cluster.local"),
                ip_addresses=tuple(dict.fromkeys((
                    "127.0.0.1", self.api_address, str(next(ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE).hosts()))))),
                server=True,
            ),
            "admin": ca.issue("admin", "kubernetes-admin", organizations=("system:masters",)),
            "kube-controller-manager": ca.issue("controller-manager", "system:kube-controller-manager"),
            "kube-scheduler": ca.issue("scheduler", "system:kube-scheduler"),
            # kwok writes Node and Pod status and node Leases like many kubelets at once.
            "kwok": ca.issue("kwok", "kwok-controller", organizations=("system:masters",)),
        }
        # The aggregation layer's CA: controller-manager and scheduler read it for delegated
        # authentication and log errors every second while it is missing.
        if self.node:
            self._node_certs = node.issue_certs(ca, self.node.ip)
        # The API server's client identity towards kubelets (exec, logs, port-forward).
        certs["kubelet-client"] = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                           organizations=("system:masters",))
        front_proxy = pki.CertificateAuthority(self.pki_dir, "front-proxy-ca", "kontainers-local-front-proxy-ca")
        certs["front-proxy-ca"] = pki.CertPair(front_proxy.cert_path, front_proxy.key_path)
        certs["front-proxy-client"] = front_proxy.issue("front-proxy-client", "front-proxy-client")
        self._ssl = ssl.create_default_context(cafile=str(certs["ca"].cert))
        self._ssl.load_cert_chain(str(certs["admin"].cert), str(certs["admin"].key))
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            kubeconfig.write(
                self.pki_dir / f"{component}.kubeconfig",
                kubeconfig.render(self.server, certs["ca"].cert, certs[component], user=component),
            )
        return certs

    @property
    def api_address(self) -> str:
        return self.node.ip if self.node else NODE_IP

    def _binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _etcd_args(self, client_url: str, peer_url: str) -> list[str]:
        return [
            self._binary("etcd"),
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync",  # test and dev data only: durability is not worth the latency
            "--log-level=warn",
        ]

    def _apiserver_args(self, etcd_url: str, port: int, certs: dict[str, pki.CertPair]) -> list[str]:
        return [
            self._binary("kube-apiserver"),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={self.api_address}",
            f"--advertise-address={self.api_address}",
            f"--secure-port={port}",
            f"--cert-dir={self.pki_dir}",
            f"--tls-cert-file={certs['apiserver'].cert}",
            f"--tls-private-key-file={certs['apiserver'].key}",
            f"--client-ca-file={certs['ca'].cert}",
            "--authorization-mode=Node,RBAC",
            # On top of the defaults (which include PodSecurity and ServiceAccount).
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--requestheader-client-ca-file={certs['front-proxy-ca'].cert}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={certs['front-proxy-client'].cert}",
            f"--proxy-client-key-file={certs['front-proxy-client'].key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={certs['sa'].cert}",
            f"--service-account-signing-key-file={certs['sa'].key}",
            # Endpoints may not hold loopback addresses: without a real node the `kubernetes`
            # Service stays empty; with one it points at the node's bridge address.
            f"--endpoint-reconciler-type={'lease' if self.node else 'none'}",
            f"--kubelet-client-certificate={certs['kubelet-client'].cert}",
            f"--kubelet-client-key={certs['kubelet-client'].key}",
            f"--kubelet-certificate-authority={certs['ca'].cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _component_common_args(self, name: str, port: int) -> list[str]:
        config = self.pki_dir / f"{name}.kubeconfig"
        return [
            self._binary(name),
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.state_dir / name}",
            "--leader-elect=false",
        ]

    def _controller_manager_args(self, port: int, certs: dict[str, pki.CertPair]) -> list[str]:
        return [
            *self._component_common_args("kube-controller-manager", port),
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={certs['sa'].key}",
            f"--root-ca-file={certs['ca'].cert}",
            f"--cluster-signing-cert-file={certs['ca'].cert}",
            f"--cluster-signing-key-file={certs['ca'].key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--allocate-node-cidrs=false",  # the launcher gives each node its /24
        ]

    def _scheduler_args(self, port: int, certs: dict[str, pki.CertPair]) -> list[str]:
        return self._component_common_args("kube-scheduler", port)

    def _kwok_args(self, certs: dict[str, pki.CertPair]) -> list[str]:
        stages = self.state_dir / "kwok-stages.yaml"
        stages.write_text(resources.files("kontainers.cluster").joinpath("kwok-stages.yaml").read_text())
        return [
            self._binary("kwok"),
            f"--kubeconfig={self.pki_dir / 'kwok.kubeconfig'}",
            f"--config={stages}",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--cidr={self.pod_cidr}",
            f"--node-ip={NODE_IP}",
            "--node-lease-duration-seconds=40",
        ]

    def _launch(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        component = Component(name, argv, self.logs_dir / f"{name}.log", env)
        component.start()
        self.components.append(component)
        self._write_pids()

    def _write_pids(self) -> None:
        pids = {c.name: c.pid for c in self.components}
        if self.node:
            pids.update(self.node.pids())
        (self.state_dir / "pids.json").write_text(json.dumps(pids))

    def _kill_stale_processes(self) -> None:
        """Kill components a previous launcher in this state dir left behind (it was SIGKILLed)."""
        pids_file = self.state_dir / "pids.json"
        try:
            pids: dict[str, int] = json.loads(pids_file.read_text())
        except (FileNotFoundError, ValueError):
            return
        for name, pid in pids.items():
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if Path(exe).name == name:  # the pid was not reused by something else
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        pids_file.unlink(missing_ok=True)

    def _create_nodes(self) -> None:
        for name, cidr in self.node_cidrs.items():
            fake = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            }
            self._create_node(fake)
        if self.node:
            self._create_node(self.node.node_object())

    def _create_node(self, manifest: dict[str, Any]) -> None:
        status, body = self._request("POST", f"{self.server}/api/v1/nodes", manifest)
        if status not in (201, 409):  # 409: kept from an earlier run in this state dir
            raise ControlPlaneError(f"creating node {manifest['metadata']['name']} failed ({status}): {body[:500]}")

    def _drop_pods_of_a_previous_run(self) -> None:
        """Delete pods a previous run of this state dir left on the fake nodes.

        kwok keeps its pod-IP pool in memory and learns an IP only when it moves a pod through a
        stage, so a restarted kwok would hand a kept Running pod's IP to the next new pod. Deleted
        now, before kwok starts, they are recreated by their owners with fresh IPs, as after a node
        reboot.
        """
        pods = self._get(f"{self.server}/api/v1/pods") or {}
        for pod in pods.get("items", []):
            meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
            if spec.get("nodeName") not in self.node_cidrs or not status.get("podIP"):
                continue
            url = f"{self.server}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
            code, body = self._request("DELETE", url, {"gracePeriodSeconds": 0})
            if code not in (200, 404):
                raise ControlPlaneError(f"deleting pod {meta['namespace']}/{meta['name']} failed ({code}): {body[:500]}")

    # --- readiness -------------------------------------------------------------------------

    def _wait(self, name: str, ready: Callable[[], bool]) -> None:
        """Poll `ready` until true; fail early when any component exits, or at the deadline."""
        while True:
            for component in self.components + (self.node.components if self.node else []):
                code = component.exit_code()
                if code is not None:
                    raise ControlPlaneError(
                        f"{component.name} exited with {code} during startup; "
                        f"tail of {component.log}:\n{component.tail()}"
                    )
            if ready():
                return
            if time.monotonic() > self._deadline:
                failing = next((c for c in self.components if c.name == name), None)
                if name == "kwok" and self.node:  # the real node's readiness is the kubelet's
                    failing = next((c for c in self.node.components if c.name == "kubelet"), failing)
                tail = f"; tail of {failing.log}:\n{failing.tail()}" if failing else ""
                raise ControlPlaneError(
                    f"control plane not ready after {self.startup_timeout:.0f}s: waiting for {name}{tail}"
                )
            time.sleep(0.2)

    def _healthy(self, port: int) -> bool:
        # Components serve /healthz to anyone (--authorization-always-allow-paths) on a self-signed cert.
        return self._get_text(f"https://127.0.0.1:{port}/healthz", verify=False) == "ok"

    def _nodes_ready(self) -> bool:
        nodes = self._get(f"{self.server}/api/v1/nodes")
        if not nodes:
            return False
        ready = {
            item["metadata"]["name"]
            for item in nodes.get("items", [])
            for condition in (item.get("status") or {}).get("conditions") or []
            if condition["type"] == "Ready" and condition["status"] == "True"
        }
        wanted = set(self.node_cidrs) | ({node.NODE_NAME} if self.node else set())
        return wanted <= ready

    def _request(self, method: str, url: str, body: Any = None, verify: bool = True) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        context = self._ssl if verify else ssl._create_unverified_context()
        try:
            with urllib.request.urlopen(request, timeout=5, context=context if url.startswith("https") else None) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")
        except (OSError, urllib.error.URLError):
            return 0, ""

    def _get_text(self, url: str, verify: bool = True) -> str | None:
        status, body = self._request("GET", url, verify=verify)
        return body.strip() if status == 200 else None

    def _get(self, url: str, verify: bool = True) -> Any:
        text = self._get_text(url, verify=verify)
        return json.loads(text) if text else None


# --- `kontainers cluster` --------------------------------------------------------------------


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kontainers cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, required=True, help="certificates, etcd data, logs, kubeconfig")
    parser.add_argument("--bin-dir", type=Path, help="prebuilt binaries (default: the pinned build cache)")
    parser.add_argument("--nodes", type=int, default=1, help="number of fake kwok nodes")
    parser.add_argument("--real-node", action="store_true",
                        help=f"also run a real node ({node.NODE_NAME}: containerd, kubelet, CNI, kube-router; needs root)")
    parser.add_argument("--pod-cidr", default="127.66.0.0/16", help="pods get IPs from /24s of this range")
    args = parser.parse_args(argv)

    # SIGTERM behaves like Ctrl-C, so startup and the wait below unwind through `finally`.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    if args.real_node and (reason := node.unavailable_reason()):
        print(f"kontainers cluster: {reason}", file=sys.stderr)
        return 1
    control_plane = ControlPlane(args.state_dir, args.bin_dir, nodes=args.nodes, pod_cidr=args.pod_cidr,
                                 real_node=args.real_node)
    started = time.monotonic()
    try:
        control_plane.start()
        print(
            f"control plane ready in {time.monotonic() - started:.1f}s at {control_plane.server}\n"
            f"  export KUBECONFIG={control_plane.kubeconfig}\n"
            f"  export PATH={control_plane.bin_dir}:$PATH   # kubectl, helm\n"
            f"  logs: {control_plane.logs_dir}/\n"
            "Press Ctrl-C (or send SIGTERM) to stop.",
            flush=True,
        )
        while True:
            time.sleep(1)
            for component in control_plane.components:
                if component.exit_code() is not None:
                    print(f"{component.name} exited ({component.exit_code()}); tail of {component.log}:\n"
                          f"{component.tail()}", file=sys.stderr, flush=True)
                    return 1
    except KeyboardInterrupt:
        print("stopping the control plane", flush=True)
        return 0
    except (ControlPlaneError, build.BuildError) as error:
        print(f"kontainers cluster: {error}", file=sys.stderr)
        return 1
    finally:
        # A second signal must not interrupt the shutdown half-way and orphan components.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        control_plane.stop()
