"""A real Kubernetes node on this host: containerd + runc, kubelet, CNI bridge, kube-router's firewall.

Pods on it run real processes. Their network is a bridge that exists only on this machine
(`BRIDGE`, holding the node IP as the pods' gateway): no default route out and no NAT, so pods
reach each other and this host, nothing else. NetworkPolicies are enforced by kube-router's
firewall controller (iptables + ipset). Every file lives under `<state dir>/node` except what the
tools hard-code (`/run/containerd/s` shim sockets, `/var/log/containers` links, `/var/run/netns`),
which `cleanup()` removes with the processes, mounts, bridge, iptables chains and ipsets.

Needs root, cgroups, overlayfs and the Debian packages of `HOST_PACKAGES_FILE`; `unavailable_reason()`
says what is missing, so callers can fall back to kwok's fake nodes.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from kontainers.cluster import images, kubeconfig, pki
from kontainers.cluster.process import Component, LockBusy, free_port, hold_lock

NODE_NAME = "kontainers-node"
BRIDGE = "kntr0"
# A private range used only by this bridge: the gateway (.1) is the node IP.
POD_CIDR = "10.234.0.0/24"
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins
CONTAINERD_NAMESPACE = "k8s.io"  # the CRI plugin's namespace
CLUSTER_DOMAIN = "cluster.local"
BRIDGE_GUARD = "KONTAINERS-BRIDGE-GUARD"  # mangle chain: no forwarding off the bridge
# Set while the node runs (restored on stop): forwarding for Service traffic between pods, and
# bridged traffic through iptables so kube-proxy and kube-router see it.
FORWARDING_SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}
# The iptables chains and ipsets of kube-router, kube-proxy and the kubelet; kube-router cannot
# remove its own here (`--cleanup-config` needs IPVS), so stop() removes them all.
# (kube-proxy's and the kubelet's chains start with KUBE- too; no other Kubernetes runs here.)
FIREWALL_CHAIN_PREFIXES = ("KUBE-", "KONTAINERS-")
FIREWALL_IPSET_PREFIX = "KUBE-"
# The Debian packages a real node needs, each with a file it installs (read by .ci/run too).
HOST_PACKAGES_FILE = Path(__file__).resolve().parents[3] / "hack" / "node-packages.txt"
# The taint of a real node that shares the cluster with fake ones, and the placement that selects it.
TAINT = {"key": "kontainers.dev/real-node", "value": "true", "effect": "NoSchedule"}
NODE_SELECTOR = {"type": "real"}
# One real node per host: two kubelets clean up each other's cgroups, and the bridge is one.
HOST_LOCK = Path("/run/lock/kontainers-real-node.lock")
KUBEPODS_CGROUPS = ("/sys/fs/cgroup/pids/kubepods", "/sys/fs/cgroup/memory/kubepods", "/sys/fs/cgroup/unified/kubepods",
                    "/sys/fs/cgroup/kubepods")


def node_ip(pod_cidr: str = POD_CIDR) -> str:
    return str(next(ipaddress.ip_network(pod_cidr).hosts()))


def host_packages() -> dict[str, Path]:
    """Debian package → a file it installs."""
    packages = {}
    for line in HOST_PACKAGES_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            package, path = line.split()
            packages[package] = Path(path)
    return packages


def take_host_lock(node_dir: Path):
    """The host lock of a real node (LockBusy when another one runs here), held until closed."""
    return hold_lock(HOST_LOCK, f"pid {os.getpid()}, state dir {node_dir}")


def unavailable_reason(*, check_lock: bool = True) -> str | None:
    """Why a real node cannot run on this machine, or None when it can; with `check_lock=False`
    a real node already running here is not a reason (the caller takes the lock itself)."""
    if os.geteuid() != 0:
        return "a real node needs root (containerd, kubelet and the bridge network do)"
    if not Path("/sys/fs/cgroup").is_dir() or not any(Path("/sys/fs/cgroup").iterdir()):
        return "a real node needs cgroups mounted at /sys/fs/cgroup"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "a real node needs overlayfs (modprobe overlay)"
    missing = sorted(package for package, path in host_packages().items() if not path.exists())
    if missing:
        return f"a real node needs these Debian packages: {' '.join(missing)} (apt-get install {' '.join(missing)})"
    if check_lock and HOST_LOCK.exists():
        with open(HOST_LOCK) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return f"a real node already runs on this machine ({lock.read().strip()}); one per host"
    return None


@dataclass(frozen=True)
class NodeCerts:
    kubelet_client: pki.CertPair  # system:node:<name>, the node authorizer's identity
    kubelet_serving: pki.CertPair
    proxy_client: pki.CertPair  # system:kube-proxy, bound to system:node-proxier by default RBAC
    addons_client: pki.CertPair  # kube-router and CoreDNS: cluster-wide watches


def issue_certs(ca: pki.CertificateAuthority, ip: str) -> NodeCerts:
    return NodeCerts(
        kubelet_client=ca.issue("kubelet-client", f"system:node:{NODE_NAME}", organizations=("system:nodes",)),
        kubelet_serving=ca.issue(f"kubelet-serving-{ip}", NODE_NAME, dns_names=(NODE_NAME,),
                                 ip_addresses=(ip,), server=True),
        proxy_client=ca.issue("kube-proxy", "system:kube-proxy"),
        addons_client=ca.issue("node-addons", "kontainers-node-addons", organizations=("system:masters",)),
    )


class RealNode:
    """One node `NODE_NAME` of the cluster at `server`, started after the API server is ready."""

    def __init__(self, state_dir: Path, bin_dir: Path, logs_dir: Path, pod_cidr: str = POD_CIDR,
                 tainted: bool = False, host_lock: object | None = None) -> None:
        self.dir = state_dir / "node"
        self.tainted = tainted
        self.bin_dir, self.logs_dir = bin_dir, logs_dir
        self.pod_cidr, self.ip = pod_cidr, node_ip(pod_cidr)
        self.socket = self.dir / "containerd" / "containerd.sock"
        self.components: list[Component] = []
        self._lock: object | None = host_lock  # take_host_lock()'s, when the caller took it first

    # --- lifecycle -------------------------------------------------------------------------

    def node_object(self) -> dict:
        """The Node, created before the kubelet starts: kube-router needs it at once, and its
        labels, taint and pod CIDR are then set however often the kubelet re-registers."""
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME, **NODE_SELECTOR}},
            "spec": {"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr],
                     **({"taints": [TAINT]} if self.tainted else {})},
        }

    def prepare(self) -> None:
        """Before the API server starts (it listens on the node IP): the host lock, what a killed
        run left behind, the bridge holding the node IP, and forwarding confined to the bridge."""
        self._take_host_lock()
        self.cleanup()
        self._create_bridge()
        self._confine_forwarding()

    def start(self, server: str, ca_cert: Path, certs: NodeCerts, service_cidr: str,
              node_images: images.NodeImages) -> None:
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet", "pod-logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._write_cni_config(service_cidr)
        env = self._env()
        self._launch("containerd", [str(self.bin_dir / "containerd"), "--config", str(self._write_containerd_config())], env)
        configs = {}
        for user, cert in (("kubelet", certs.kubelet_client), ("kube-proxy", certs.proxy_client),
                           ("addons", certs.addons_client)):
            configs[user] = self.dir / f"{user}.kubeconfig"
            kubeconfig.write(configs[user], kubeconfig.render(server, ca_cert, cert, user=user))
        self._wait_for_socket()
        images.import_images(self.bin_dir / "ctr", self.socket, node_images, namespace=CONTAINERD_NAMESPACE)
        self._launch("kubelet", [
            str(self.bin_dir / "kubelet"),
            f"--config={self._write_kubelet_config(ca_cert, certs)}",
            f"--kubeconfig={configs['kubelet']}",
            f"--root-dir={self.dir / 'kubelet'}",
            f"--cert-dir={self.dir / 'kubelet' / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={self.ip}",
            "--v=1",
        ], env)
        self._launch("kube-proxy", [str(self.bin_dir / "kube-proxy"),
                                    f"--config={self._write_proxy_config(configs['kube-proxy'])}"], env)
        self._launch("coredns", [str(self.bin_dir / "coredns"), "-conf", str(self._write_corefile(configs["addons"]))], env)

    def start_firewall(self, timeout: float = 60.0) -> None:
        """kube-router, once the kubelet has reported the node's address (it refuses to start
        before); returns when its chains are in place, so NetworkPolicies are enforced."""
        env = self._env()
        self._launch("kube-router", [
            str(self.bin_dir / "kube-router"),
            f"--kubeconfig={self.dir / 'addons.kubeconfig'}",
            "--run-firewall=true",
            "--run-router=false",
            "--run-service-proxy=false",  # kube-proxy's job (kube-router's proxy needs IPVS)
            "--health-port=0",
            "--metrics-port=0",
            f"--hostname-override={NODE_NAME}",
        ], env)
        firewall = self.components[-1]
        deadline = time.monotonic() + timeout
        while subprocess.run(["iptables", "-S", "KUBE-ROUTER-FORWARD"], capture_output=True).returncode != 0:
            if firewall.exit_code() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kube-router did not set up its firewall; tail of {firewall.log}:\n{firewall.tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop the node's processes and remove everything it created on the host."""
        by_stage = [
            [c for c in self.components if c.name != "containerd"],
            [c for c in self.components if c.name == "containerd"],
        ]
        for stage in by_stage:
            if any(c.name == "containerd" for c in stage):
                self._kill_pod_processes()
            for component in stage:
                component.terminate()
            for component in stage:
                component.stop()
        self.components = []
        if self._lock is not None:
            self.cleanup()
            self._lock.close()  # type: ignore[attr-defined]
            self._lock = None

    def cleanup(self) -> None:
        """Idempotent: pod processes, shims, mounts, netns, log links, bridge, chains, ipsets."""
        self._kill_pod_processes()
        self._kill_shims()
        self._unmount_under(self.dir)
        self._remove_netns_files()
        self._remove_container_log_links()
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
        self._remove_firewall_rules()
        self._restore_sysctls()
        shutil.rmtree(self.dir / "cni" / "ipam", ignore_errors=True)  # no address stays leased

    def _take_host_lock(self) -> None:
        if self._lock is not None:  # taken by the caller before anything started (kontainers dev)
            return
        try:
            self._lock = take_host_lock(self.dir)
        except LockBusy as busy:
            raise RuntimeError(f"a real node already runs on this machine ({busy.holder}); one per host") from None

    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.components if c.pid}

    # --- configuration ---------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        # containerd finds its shim, and the shim runc, on PATH.
        return {**os.environ, "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}

    def _launch(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        component = Component(name, argv, self.logs_dir / f"{name}.log", env)
        component.start()
        self.components.append(component)

    def _create_bridge(self) -> None:
        # Created before the kubelet starts, since its node IP must exist on an interface; the
        # CNI bridge plugin then finds it with its gateway address already there.
        prefix = ipaddress.ip_network(self.pod_cidr).prefixlen
        for argv in (["ip", "link", "add", BRIDGE, "type", "bridge"],
                     ["ip", "addr", "add", f"{self.ip}/{prefix}", "dev", BRIDGE],
                     ["ip", "link", "set", BRIDGE, "up"]):
            subprocess.run(argv, check=True, capture_output=True)

    def _write_cni_config(self, service_cidr: str) -> None:
        config = {
            "cniVersion": "1.0.0",
            "name": "kontainers",
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "isDefaultGateway": False,  # no route out of this machine
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": self.pod_cidr, "gateway": self.ip}]],
                    "routes": [{"dst": service_cidr}],  # Service IPs, through this host's kube-proxy
                    "dataDir": str(self.dir / "cni" / "ipam"),
                },
            }],
        }
        (self.dir / "cni" / "net.d" / "10-kontainers.conflist").write_text(json.dumps(config, indent=2))

    def _write_containerd_config(self) -> Path:
        state = self.dir / "containerd"
        # TOML written by hand: four tables, and no TOML writer is among the dependencies.
        text = f"""version = 3
root = '{state / "root"}'
state = '{state / "state"}'

[grpc]
  address = '{self.socket}'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{images.PAUSE_IMAGE}'  # built here, pinned: never pulled nor collected

[plugins.'io.containerd.cri.v1.runtime']
  # This machine lacks CAP_SYS_RESOURCE: runc may not lower oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      SystemdCgroup = false
      Root = '{state / "runc"}'
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['{CNI_BIN_DIR}']
    conf_dir = '{self.dir / "cni" / "net.d"}'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
"""
        path = state / "config.toml"
        path.write_text(text)
        return path

    def _write_kubelet_config(self, ca_cert: Path, certs: NodeCerts) -> Path:
        resolv = self.dir / "resolv.conf"
        resolv.write_text("")  # no upstream: no name outside the cluster resolves, no query leaves
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",  # no systemd here
            "failCgroupV1": False,  # kubelet >= 1.35 refuses cgroup v1 unless told
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": self.ip,
            "port": free_port(),
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            "clusterDNS": [self.ip],
            "clusterDomain": CLUSTER_DOMAIN,
            "tlsCertFile": str(certs.kubelet_serving.cert),
            "tlsPrivateKeyFile": str(certs.kubelet_serving.key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "resolvConf": str(resolv),
            "podLogsDir": str(self.dir / "pod-logs"),
            "registerNode": True,
            "serializeImagePulls": False,
            # The disk is shared with everything else on this machine: evict only when nearly full.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%", "imagefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "10s",
        }
        path = self.dir / "kubelet-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _write_proxy_config(self, client_kubeconfig: Path) -> Path:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(client_kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": self.pod_cidr,
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "nodePortAddresses": [f"{self.ip}/32"],  # NodePorts only on the bridge
            "conntrack": {"maxPerCore": 0, "min": 0},  # leave the host's conntrack table alone
            "iptables": {"localhostNodePorts": False},
        }
        path = self.dir / "kube-proxy-config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _write_corefile(self, client_kubeconfig: Path) -> Path:
        # Cluster names only, on the bridge address: with no `forward` nothing else resolves, so
        # no query ever leaves this machine.
        path = self.dir / "Corefile"
        path.write_text(f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {self.ip}
    errors
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {client_kubeconfig}
        pods insecure
    }}
}}
.:53 {{
    bind {self.ip}
    errors
}}
""")
        return path

    def _confine_forwarding(self) -> None:
        """Pods reach Services (kube-proxy DNATs to other pods: forwarding), but nothing is ever
        forwarded between the bridge and another interface: that would be traffic off this machine."""
        saved = {}
        for key in FORWARDING_SYSCTLS:
            path = Path("/proc/sys") / key.replace(".", "/")
            saved[key] = path.read_text().strip()
        (self.dir).mkdir(parents=True, exist_ok=True)
        (self.dir / "sysctls.json").write_text(json.dumps(saved))
        for rule in ([BRIDGE_GUARD, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"],
                     [BRIDGE_GUARD, "!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP"]):
            subprocess.run(["iptables", "-t", "mangle", "-N", BRIDGE_GUARD], capture_output=True)
            subprocess.run(["iptables", "-t", "mangle", "-A", *rule], check=True, capture_output=True)
        subprocess.run(["iptables", "-t", "mangle", "-I", "FORWARD", "1", "-j", BRIDGE_GUARD], check=True,
                       capture_output=True)
        for key, value in FORWARDING_SYSCTLS.items():
            (Path("/proc/sys") / key.replace(".", "/")).write_text(value)

    def _restore_sysctls(self) -> None:
        saved_file = self.dir / "sysctls.json"
        if not saved_file.exists():
            return
        for key, value in json.loads(saved_file.read_text()).items():
            try:
                (Path("/proc/sys") / key.replace(".", "/")).write_text(value)
            except OSError:
                pass
        saved_file.unlink()

    def _wait_for_socket(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        containerd = self.components[-1]
        while not self.socket.exists():
            if containerd.exit_code() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start; tail of {containerd.log}:\n{containerd.tail()}")
            time.sleep(0.1)

    # --- cleanup ---------------------------------------------------------------------------

    def _kill_pod_processes(self) -> None:
        """SIGKILL every process in the kubelet's pod cgroups (the containers of this node)."""
        for _ in range(50):
            pids = set()
            for root in KUBEPODS_CGROUPS:
                # os.walk, not Path.rglob: the kubelet removes pod cgroups while we look, and a
                # directory that vanished mid-walk is skipped instead of raising.
                for directory, _, files in os.walk(root):
                    if "cgroup.procs" not in files:
                        continue
                    try:
                        pids.update(int(p) for p in Path(directory, "cgroup.procs").read_text().split())
                    except OSError:
                        continue
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def _kill_shims(self) -> None:
        """The runc shims of this node's containerd (found by the socket address in their argv)."""
        address = str(self.socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address in argv:
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    @staticmethod
    def _unmount_under(directory: Path) -> None:
        prefix = str(directory.resolve()) + "/"
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix):
                mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):  # nested mounts first
            subprocess.run(["umount", "-l", point], capture_output=True)

    def _remove_netns_files(self) -> None:
        netns = Path("/var/run/netns")
        for entry in netns.glob("cni-*") if netns.is_dir() else ():
            subprocess.run(["umount", "-l", str(entry)], capture_output=True)
            entry.unlink(missing_ok=True)

    def _remove_container_log_links(self) -> None:
        # The kubelet hard-codes /var/log/containers; only links into this node's logs go.
        target_prefix = str((self.dir / "pod-logs").resolve())
        for link in Path("/var/log/containers").glob("*.log") if Path("/var/log/containers").is_dir() else ():
            try:
                if os.readlink(link).startswith(target_prefix):
                    link.unlink()
            except OSError:
                continue

    @staticmethod
    def _remove_firewall_rules() -> None:
        for table in ("filter", "nat", "mangle"):
            listing = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True).stdout
            ours = {line.split()[1] for line in listing.splitlines()
                    if line.startswith("-N ") and line.split()[1].startswith(FIREWALL_CHAIN_PREFIXES)}
            if not ours:
                continue
            for line in listing.splitlines():  # the jumps into our chains from built-in ones
                parts = shlex.split(line)  # comments are quoted
                if parts[0] == "-A" and "-j" in parts and parts[parts.index("-j") + 1] in ours and parts[1] not in ours:
                    subprocess.run(["iptables", "-t", table, "-D", *parts[1:]], capture_output=True)
            for chain in ours:
                subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
            for chain in ours:
                subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)
        sets = subprocess.run(["ipset", "list", "-n"], capture_output=True, text=True).stdout.split()
        for name in sets:
            if name.startswith(FIREWALL_IPSET_PREFIX):
                subprocess.run(["ipset", "destroy", name], capture_output=True)
