"""The real node's configuration files: what keeps its pods on this machine and its pieces found."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kontainers.cluster import node


def real_node(tmp_path: Path) -> node.RealNode:
    return node.RealNode(tmp_path, tmp_path / "bin", tmp_path / "logs")


def test_pod_network_has_no_way_off_this_machine(tmp_path):
    n = real_node(tmp_path)
    (n.dir / "cni" / "net.d").mkdir(parents=True)
    n._write_cni_config("10.96.0.0/16")
    config = json.loads((n.dir / "cni" / "net.d" / "10-kontainers.conflist").read_text())
    bridge = config["plugins"][0]
    assert bridge["bridge"] == node.BRIDGE and bridge["isGateway"] is True
    assert bridge["isDefaultGateway"] is False and bridge["ipMasq"] is False  # no default route, no NAT
    assert bridge["ipam"]["routes"] == [{"dst": "10.96.0.0/16"}]  # only Service IPs, via this host
    assert bridge["ipam"]["ranges"] == [[{"subnet": node.POD_CIDR, "gateway": n.ip}]]


def test_dns_answers_cluster_names_only_and_only_on_the_bridge(tmp_path):
    n = real_node(tmp_path)
    n.dir.mkdir(parents=True)
    corefile = n._write_corefile(tmp_path / "addons.kubeconfig").read_text()
    assert "forward" not in corefile  # no upstream resolver: no query leaves this machine
    assert corefile.count(f"bind {n.ip}") == 2


def test_kubelet_runs_on_cgroup_v1_with_webhook_auth(tmp_path):
    n = real_node(tmp_path)
    n.dir.mkdir(parents=True)
    certs = node.NodeCerts(*(node.pki.CertPair(tmp_path / f"{i}.crt", tmp_path / f"{i}.key") for i in range(4)))
    config = yaml.safe_load(n._write_kubelet_config(tmp_path / "ca.crt", certs).read_text())
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["readOnlyPort"] == 0 and config["address"] == n.ip
    assert config["clusterDNS"] == [n.ip]


def test_containerd_keeps_its_state_under_the_state_dir(tmp_path):
    n = real_node(tmp_path)
    (n.dir / "containerd").mkdir(parents=True)
    text = n._write_containerd_config().read_text()
    assert "restrict_oom_score_adj = true" in text  # this machine lacks CAP_SYS_RESOURCE
    assert f"sandbox = '{node.images.PAUSE_IMAGE}'" in text
    for line in text.splitlines():
        if line.strip().startswith(("root =", "state =", "address =", "Root =")):
            assert str(tmp_path) in line, line


def test_missing_packages_are_named(tmp_path, monkeypatch):
    listing = tmp_path / "packages.txt"
    listing.write_text(f"# comment\npresent {listing}\nabsent-pkg {tmp_path / 'nope'}\n")
    monkeypatch.setattr(node, "HOST_PACKAGES_FILE", listing)
    monkeypatch.setattr(node.os, "geteuid", lambda: 0)
    reason = node.unavailable_reason()
    assert reason is not None and "absent-pkg" in reason and "present " not in reason


def test_not_root_is_a_reason(monkeypatch):
    monkeypatch.setattr(node.os, "geteuid", lambda: 1000)
    assert "root" in (node.unavailable_reason() or "")
