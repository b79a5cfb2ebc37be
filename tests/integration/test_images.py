"""The local node's images, built here (or reused from the cache): what runs in them, and that
containerd imports their archives under their names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time

import pytest

from kontainers.cluster import build, images

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the image builds (debootstrap, buildah) need root")


@pytest.fixture(scope="module")
def node_images() -> images.NodeImages:
    # A cold build takes minutes (debootstrap, PyPI); later runs reuse the archives.
    return images.ensure_images()


def test_a_second_ensure_is_a_cache_hit(node_images):
    # Not the kontainers image: operator/ may be edited while the tests run.
    started = time.monotonic()
    again = images.ensure_images(["sandbox", "pause"])
    assert time.monotonic() - started < 1.0
    assert (again.sandbox, again.pause) == (node_images.sandbox, node_images.pause)


def test_the_archives_carry_the_names_and_configs(node_images):
    for image in node_images:
        tags, config = images.archive_config(image.archive)
        assert tags == [image.name]
    _, kontainers = images.archive_config(node_images.kontainers.archive)
    assert kontainers["config"]["User"] == "10001:10001"
    assert kontainers["config"]["Entrypoint"] == ["kontainers"]
    _, sandbox = images.archive_config(node_images.sandbox.archive)
    assert sandbox["config"]["User"] == "10001:10001"
    assert sandbox["config"]["WorkingDir"] == "/mnt/data"
    _, pause = images.archive_config(node_images.pause.archive)
    assert pause["config"]["Entrypoint"] == ["/pause"]


def test_the_kontainers_image_runs_kontainers_as_10001_without_compilers(node_images):
    image = node_images.kontainers  # run from its archive: what the node gets
    ran = images.run_in_image(image, "kontainers", "--help")
    assert ran.returncode == 0, ran.stderr
    assert "usage: kontainers" in ran.stdout
    ran = images.run_in_image(image, "sh", "-c", "id -u; id -g; command -v gcc cc || echo none")
    assert ran.stdout.split() == ["10001", "10001", "none"], ran.stderr
    # On its own, so a failure shows the import's own exit status and traceback first.
    ran = images.run_in_image(image, "python3", "-c", "import mitmproxy, kontainers.egress.addon; print('ok')")
    assert (ran.returncode, ran.stdout.strip()) == (0, "ok"), f"exit {ran.returncode}: {ran.stderr[-2000:]}"


def test_the_sandbox_image_has_the_hosted_containers_tools(node_images):
    ran = images.run_in_image(node_images.sandbox, "bash", "-c",
                              "id -u; pwd; . /etc/os-release; echo $VERSION_ID; "
                              "python3 -c 'import sys; print(sys.version_info[:2] == (3, 11))'; "
                              "python3 -m pip --version >/dev/null && echo pip; "
                              "curl --version >/dev/null && echo curl; ps -e -o comm= | grep -qx ps && echo ps; "
                              "sh -c 'echo sh'; realpath /mnt/data | xargs stat -c %u")
    assert ran.stdout.split() == ["10001", "/mnt/data", "12", "True", "pip", "curl", "ps", "sh", "10001"], ran.stderr


def test_the_pause_image_holds_only_a_static_pause(node_images, tmp_path):
    with tarfile.open(node_images.pause.archive) as tar:
        (layer,) = json.load(tar.extractfile("manifest.json"))[0]["Layers"]
        with tarfile.open(fileobj=tar.extractfile(layer)) as rootfs:
            assert [m.name.lstrip("./") for m in rootfs.getmembers() if not m.isdir()] == ["pause"]
            rootfs.extract("pause", tmp_path, filter="tar")
    binary = tmp_path / "pause"
    assert b"/lib64/ld-linux" not in binary.read_bytes()  # no ELF interpreter: static
    ran = subprocess.run([str(binary), "-v"], capture_output=True, text=True)
    assert ran.returncode == 0 and ran.stdout.startswith(f"pause.c v{images.PAUSE_TAG}")


@pytest.fixture
def containerd(tmp_path):
    """A throwaway containerd (root, state and socket under tmp_path), stopped by its pid."""
    bin_dir = build.bin_dir()
    if not all((bin_dir / tool).is_file() for tool in ("containerd", "ctr")):
        pytest.skip(f"containerd and ctr are not built in {bin_dir} (python -m kontainers.cluster.build)")
    socket = tmp_path / "containerd.sock"
    config = tmp_path / "config.toml"
    config.write_text(f"""version = 3
root = "{tmp_path}/root"
state = "{tmp_path}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images",
                    "io.containerd.nri.v1.nri", "io.containerd.internal.v1.opt"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
""")
    log = (tmp_path / "containerd.log").open("w")
    proc = subprocess.Popen([str(bin_dir / "containerd"), "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"containerd did not start:\n{(tmp_path / 'containerd.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield bin_dir / "ctr", socket
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for mount in images._mounts_under(tmp_path):
            subprocess.run(["umount", "--lazy", str(mount)], check=False)
        shutil.rmtree(tmp_path / "root", ignore_errors=True)


def test_containerd_imports_every_archive_under_its_name(node_images, containerd):
    ctr, socket = containerd
    names = images.import_images(ctr, socket, list(node_images))
    assert {image.name for image in node_images} <= set(names)
    # Imported images are unpacked for the node's snapshotter, ready for the CRI.
    listed = subprocess.run([str(ctr), "--address", str(socket), "-n", "k8s.io", "images", "check"],
                            capture_output=True, text=True, check=True).stdout
    for image in node_images:
        line = next(line for line in listed.splitlines() if line.startswith(image.name))
        assert "complete" in line
