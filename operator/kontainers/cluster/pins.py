"""The versions of every Go-built binary of the local control plane, pinned in one place.

`kontainers.cluster.build --regenerate` writes the scratch Go modules under
`hack/toolchain/` from this table; a unit test fails when they drift from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GoTool:
    """One scratch Go module and the binaries built from it."""

    module: str
    """The Go module required at `version` (the one holding the commands)."""
    version: str
    binaries: dict[str, str]
    """Output binary name → Go package path to build."""
    tags: tuple[str, ...] = ("selinux", "notest")
    """Go build tags (the upstream release builds' own)."""


KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
# The S3-compatible server the Files API's S3 backend is tested against (kontainers.files.s3dev).
VERSITYGW_VERSION = "v1.8.0"
# The real node's pieces (kubelet comes from the Kubernetes module above).
CONTAINERD_VERSION = "v2.2.9"
# The NetworkPolicy enforcer (its firewall controller only); v2.1.0 is the newest /v2 tag served.
KUBE_ROUTER_VERSION = "v2.1.0"
# Cluster DNS for the real node's pods (Service names), as on any cluster.
COREDNS_VERSION = "v1.15.0"

TOOLS: dict[str, GoTool] = {
    "kubernetes": GoTool(
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        binaries={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        },
    ),
    "etcd": GoTool(
        module="go.etcd.io/etcd/server/v3",
        version=ETCD_VERSION,
        binaries={"etcd": "go.etcd.io/etcd/server/v3"},
    ),
    "kwok": GoTool(
        module="sigs.k8s.io/kwok",
        version=KWOK_VERSION,
        binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
    ),
    "helm": GoTool(
        module="helm.sh/helm/v3",
        version=HELM_VERSION,
        binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
    ),
    "versitygw": GoTool(
        module="github.com/versity/versitygw",
        version=VERSITYGW_VERSION,
        binaries={"versitygw": "github.com/versity/versitygw/cmd/versitygw"},
    ),
    "containerd": GoTool(
        module="github.com/containerd/containerd/v2",
        version=CONTAINERD_VERSION,
        binaries={
            "containerd": "github.com/containerd/containerd/v2/cmd/containerd",
            "ctr": "github.com/containerd/containerd/v2/cmd/ctr",
            "containerd-shim-runc-v2": "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
        },
        # Snapshotters that need cgo or kernel pieces this node does not use (its one is overlayfs).
        tags=("no_btrfs", "no_devmapper", "no_zfs"),
    ),
    "kube-router": GoTool(
        module="github.com/cloudnativelabs/kube-router/v2",
        version=KUBE_ROUTER_VERSION,
        binaries={"kube-router": "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router"},
        tags=(),
    ),
    "coredns": GoTool(
        module="github.com/coredns/coredns",
        version=COREDNS_VERSION,
        binaries={"coredns": "github.com/coredns/coredns"},
        tags=(),
    ),
}
