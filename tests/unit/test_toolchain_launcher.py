"""Launcher pieces that need no real binaries: CIDRs, PKI, kubeconfig, failure reporting, cleanup."""

from __future__ import annotations

import base64
import ipaddress
import os
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kontainers.cluster import kubeconfig, pki
from kontainers.cluster.launcher import ControlPlane, ControlPlaneError, node_cidrs
from kontainers.cluster.pins import TOOLS


def test_node_cidrs_are_consecutive_24s_inside_the_pod_cidr():
    cidrs = node_cidrs("127.66.0.0/16", 3)
    assert cidrs == ["127.66.0.0/24", "127.66.1.0/24", "127.66.2.0/24"]
    assert all(ipaddress.ip_network(c).subnet_of(ipaddress.ip_network("127.66.0.0/16")) for c in cidrs)


@pytest.mark.parametrize(("cidr", "nodes"), [("127.66.0.0/25", 1), ("127.66.0.0/24", 2), ("fd00::/64", 1)])
def test_node_cidrs_rejects_ranges_too_small_or_not_ipv4(cidr, nodes):
    with pytest.raises(ValueError):
        node_cidrs(cidr, nodes)


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_pki_issues_certificates_signed_by_the_ca(tmp_path):
    ca = pki.CertificateAuthority(tmp_path)
    server = ca.issue("apiserver", "kube-apiserver", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True)
    admin = ca.issue("admin", "kubernetes-admin", organizations=("system:masters",))
    ca_cert = _load(ca.cert_path)
    for pair in (server, admin):
        _load(pair.cert).verify_directly_issued_by(ca_cert)
        assert pair.key.stat().st_mode & 0o077 == 0, "private keys are owner-only"

    sans = _load(server.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    usage = _load(admin.cert).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    subject = _load(admin.cert).subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kubernetes-admin"


def test_pki_reuses_existing_files(tmp_path):
    first = pki.CertificateAuthority(tmp_path).issue("admin", "kubernetes-admin")
    cert_bytes = first.cert.read_bytes()
    ca_bytes = (tmp_path / "ca.crt").read_bytes()
    again = pki.CertificateAuthority(tmp_path).issue("admin", "kubernetes-admin")
    assert again.cert.read_bytes() == cert_bytes
    assert (tmp_path / "ca.crt").read_bytes() == ca_bytes
    sa = pki.service_account_keys(tmp_path)
    assert pki.service_account_keys(tmp_path).cert.read_bytes() == sa.cert.read_bytes()


def test_kubeconfig_embeds_the_credentials(tmp_path):
    ca = pki.CertificateAuthority(tmp_path)
    admin = ca.issue("admin", "kubernetes-admin", organizations=("system:masters",))
    path = tmp_path / "kubeconfig"
    kubeconfig.write(path, kubeconfig.render("https://127.0.0.1:6443", ca.cert_path, admin, user="admin"))
    config = yaml.safe_load(path.read_text())
    assert path.stat().st_mode & 0o077 == 0
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]) == ca.cert_path.read_bytes()
    assert base64.b64decode(config["users"][0]["user"]["client-key-data"]) == admin.key.read_bytes()
    assert config["current-context"] == config["contexts"][0]["name"]


def _fake_bin_dir(directory: Path, etcd_script: str) -> Path:
    """Every pinned binary as a stub; etcd runs `etcd_script`."""
    directory.mkdir()
    for tool in TOOLS.values():
        for binary in tool.binaries:
            path = directory / binary
            path.write_text("#!/bin/sh\n" + (etcd_script if binary == "etcd" else "exit 0\n"))
            path.chmod(0o755)
    return directory


def test_a_component_exiting_at_startup_raises_with_its_log_tail(tmp_path):
    bin_dir = _fake_bin_dir(tmp_path / "bin", 'echo "listen tcp: address already in use (boom)" >&2\nexit 3\n')
    control_plane = ControlPlane(tmp_path / "state", bin_dir)
    with pytest.raises(ControlPlaneError) as error:
        control_plane.start()
    assert "etcd exited with 3" in str(error.value)
    assert "address already in use (boom)" in str(error.value)
    # A port taken between probing and binding is retried once with new ports.
    assert (control_plane.logs_dir / "etcd.log").read_text().count("### ") == 2
    assert not control_plane.kubeconfig.exists()


def test_a_component_never_ready_times_out_and_leaves_no_process(tmp_path):
    # The stub forks a grandchild, which only a process-group kill reaches.
    marker = f"kontainers-test-{os.getpid()}-{time.monotonic_ns()}"
    script = f'sh -c "sleep 300; : {marker}" &\nwait\n'
    bin_dir = _fake_bin_dir(tmp_path / "bin", script)
    control_plane = ControlPlane(tmp_path / "state", bin_dir, startup_timeout=1.5)
    with pytest.raises(ControlPlaneError, match="not ready after 2s: waiting for etcd"):
        control_plane.start()
    survivors = [p for p in Path("/proc").iterdir()
                 if p.name.isdigit() and marker.encode() in _cmdline(p)]
    assert survivors == []
    control_plane.stop()  # idempotent


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
