"""The local node's images (kontainers.cluster.images): cache keys follow exactly their inputs; the
Dockerfile stays usable. (tests/integration/test_images.py builds them.)"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from kontainers.cluster import images

BASE = "b" * 64


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("KONTAINERS_DEBIAN_MIRROR", raising=False)
    monkeypatch.setattr(images, "gcc_version", lambda: "12.2.0 x86_64-linux-gnu")
    pause_c = tmp_path / "pause.c"
    pause_c.write_text("int main(void) { return 0; }\n")
    monkeypatch.setattr(images, "pause_source", lambda download=True: pause_c)
    return tmp_path / "cache" / "kontainers" / "images"


def _tree(root: Path, git: bool) -> Path:
    (root / "operator" / "kontainers").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'kontainers'\n")
    (root / "README.md").write_text("readme\n")
    (root / "operator" / "kontainers" / "__init__.py").write_text("")
    (root / "operator" / "kontainers" / "cli.py").write_text("def main(): pass\n")
    (root / "Dockerfile").write_text("FROM ${BASE_IMAGE}\n")
    if git:
        (root / ".gitignore").write_text("__pycache__/\n*.egg-info/\n")
        subprocess.run(["git", "init", "-q", str(root)], check=True)
        subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    return root


@pytest.mark.parametrize("git", [True, False], ids=["git", "no-git"])
def test_the_kontainers_key_follows_the_sources_and_nothing_else(tmp_path, git):
    root = _tree(tmp_path / "src", git)
    key = lambda: images.kontainers_key(BASE, root=root, dockerfile=root / "Dockerfile")  # noqa: E731
    before = key()
    assert key() == before

    # Generated files are not inputs.
    (root / "operator" / "kontainers" / "__pycache__").mkdir()
    (root / "operator" / "kontainers" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0")
    (root / "operator" / "kontainers.egg-info").mkdir()
    (root / "operator" / "kontainers.egg-info" / "PKG-INFO").write_text("x")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("")  # outside the image's sources
    assert key() == before

    (root / "operator" / "kontainers" / "cli.py").write_text("def main(): return 1\n")
    edited = key()
    assert edited != before
    (root / "operator" / "kontainers" / "new.py").write_text("")  # a new, not yet added module
    assert key() != edited
    (root / "operator" / "kontainers" / "new.py").unlink()
    assert key() == edited

    (root / "pyproject.toml").write_text("[project]\nname = 'kontainers'\nversion = '2'\n")
    assert key() != edited
    with_pyproject = key()
    (root / "Dockerfile").write_text("FROM ${BASE_IMAGE}\nUSER 10001\n")
    assert key() != with_pyproject
    assert images.kontainers_key("c" * 64, root=root, dockerfile=root / "Dockerfile") != key()


def test_the_sources_listed_are_the_ones_the_dockerfile_copies(tmp_path):
    root = _tree(tmp_path / "src", git=True)
    assert [p.as_posix() for p in images.kontainers_sources(root)] == [
        "README.md", "operator/kontainers/__init__.py", "operator/kontainers/cli.py", "pyproject.toml"]
    copied = re.findall(r"^COPY (?!--from)(.+)$", images.DOCKERFILE.read_text(), re.M)
    named = {word.rstrip("/") for line in copied for word in line.split()[:-1]}
    assert named == set(images.KONTAINERS_SOURCES)


def test_the_sandbox_key_follows_its_containerfile_and_the_base(tmp_path):
    containerfile = tmp_path / "Containerfile"
    containerfile.write_text("FROM ${BASE_IMAGE}\n")
    before = images.sandbox_key(BASE, containerfile)
    assert images.sandbox_key(BASE, containerfile) == before
    assert images.sandbox_key("c" * 64, containerfile) != before
    containerfile.write_text("FROM ${BASE_IMAGE}\nUSER 10001\n")
    assert images.sandbox_key(BASE, containerfile) != before


def test_the_base_key_follows_the_mirror_and_the_packages(cache, monkeypatch):
    before = images.base_key("http://deb.debian.org/debian")
    assert images.base_key("http://deb.debian.org/debian") == before
    assert images.base_key("http://mirror.example/debian") != before
    monkeypatch.setattr(images, "base_packages", lambda: ["python3", "curl"])
    assert images.base_key("http://deb.debian.org/debian") != before


def test_the_pause_key_follows_pause_c_and_gcc(cache, monkeypatch, tmp_path):
    before = images.pause_key()
    assert images.pause_key() == before
    monkeypatch.setattr(images, "gcc_version", lambda: "13.1.0 x86_64-linux-gnu")
    assert images.pause_key() != before
    monkeypatch.setattr(images, "gcc_version", lambda: "12.2.0 x86_64-linux-gnu")
    (tmp_path / "pause.c").write_text("int main(void) { return 1; }\n")
    assert images.pause_key() != before


def test_the_dockerfile_default_base_is_unchanged_and_both_stages_use_the_argument():
    text = images.DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    final = text.split("\nFROM ")[-1]
    assert 'ENTRYPOINT ["kontainers"]' in final
    assert "USER 10001:10001" in final and "--gid 10001" in final and "--uid 10001" in final
    assert '"kontainers[egress]"' in final
    # The wheels are mounted, not copied: the final image holds no wheel or build tool.
    assert "COPY --from=wheels /wheels " not in final and "COPY --from=wheels /dist " not in final


def test_the_apt_mirror_is_read_from_both_sources_formats(tmp_path, monkeypatch):
    monkeypatch.delenv("KONTAINERS_DEBIAN_MIRROR", raising=False)
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n")
    (apt / "sources.list.d" / "other.list.disabled").write_text("deb http://nope.example/debian bookworm main\n")
    assert images.apt_mirror(apt) == "http://mirror.example/debian"
    (apt / "sources.list").write_text("# deb http://commented.example/debian bookworm main\n"
                                      "deb [arch=amd64 signed-by=/k.gpg] http://list.example/debian bookworm main\n")
    assert images.apt_mirror(apt) == "http://list.example/debian"
    monkeypatch.setenv("KONTAINERS_DEBIAN_MIRROR", "http://override.example/debian/")
    assert images.apt_mirror(apt) == "http://override.example/debian"
    monkeypatch.delenv("KONTAINERS_DEBIAN_MIRROR")
    assert images.apt_mirror(tmp_path / "none") == images.DEFAULT_DEBIAN_MIRROR


def test_planned_images_are_named_by_their_keys_under_the_cache(cache):
    node = images.planned_images()
    assert node.kontainers.name == f"localhost/kontainers/kontainers:{node.kontainers.key[:12]}"
    assert node.sandbox.name == f"localhost/kontainers/sandbox:{node.sandbox.key[:12]}"
    assert node.pause.name == "registry.k8s.io/pause:3.10.1"
    assert node.archives() == [cache / "archives" / f"{i.kind}-{i.key[:16]}.tar" for i in node]
    assert not any(image.built for image in node)


def test_a_cache_hit_builds_nothing_and_is_fast(cache, monkeypatch):
    for image in images.planned_images():
        image.archive.parent.mkdir(parents=True, exist_ok=True)
        image.archive.write_bytes(b"archive")
    monkeypatch.setattr(images, "build_image", lambda *a: pytest.fail("nothing should be built"))
    monkeypatch.setattr(images, "ensure_base", lambda *a: pytest.fail("nothing should be built"))
    started = time.monotonic()
    node = images.ensure_images()
    assert time.monotonic() - started < 1.0
    assert all(image.built for image in node)


def test_only_the_missing_images_are_built(cache, monkeypatch):
    planned = images.planned_images()
    planned.pause.archive.parent.mkdir(parents=True)
    planned.pause.archive.write_bytes(b"archive")
    built = []
    monkeypatch.setattr(images, "ensure_base", lambda: "localhost/kontainers/base:x")
    monkeypatch.setattr(images, "build_image", lambda image, base: built.append((image.kind, base)))
    monkeypatch.setattr(images, "_remove_superseded", lambda keep: None)
    images.ensure_images()
    assert built == [("kontainers", "localhost/kontainers/base:x"), ("sandbox", "localhost/kontainers/base:x")]


def test_the_pause_image_is_named_as_containerds_default_sandbox_image():
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True).stdout.strip()
    from kontainers.cluster.pins import CONTAINERD_VERSION

    config = Path(modcache) / f"github.com/containerd/containerd/v2@{CONTAINERD_VERSION}/internal/cri/config/config.go"
    if not config.is_file():
        pytest.skip(f"containerd {CONTAINERD_VERSION} is not in the Go module cache")
    default = re.search(r'DefaultSandboxImage\s*=\s*"([^"]+)"', config.read_text()).group(1)
    assert images.PAUSE_IMAGE == default


def test_the_host_packages_list_names_the_builders():
    assert {"debootstrap", "debian-archive-keyring", "buildah", "uidmap", "gcc", "libc6-dev"} <= set(
        images.host_packages())


def _fake_ctr(tmp_path: Path) -> Path:
    """A ctr that logs its arguments; `import` lists the image named in the archive's text."""
    ctr = tmp_path / "ctr"
    ctr.write_text(f"""#!/bin/sh
echo "$@" >> {tmp_path}/calls
touch {tmp_path}/listed
case "$*" in
  *"images list"*) echo "REF TYPE DIGEST SIZE PLATFORMS LABELS"; cat {tmp_path}/listed ;;
  *"images import"*)
    for last; do :; done
    name=$(cat "$last"); [ -n "$name" ] || exit 0
    label=$(echo "$*" | sed -n 's/.*--label \\([^ ]*\\).*/\\1/p')
    grep -v "^$name " {tmp_path}/listed > {tmp_path}/listed.new; mv {tmp_path}/listed.new {tmp_path}/listed
    echo "$name application/x sha256:0 1.0 MiB linux/amd64 ${{label:--}}" >> {tmp_path}/listed ;;
esac
""")
    ctr.chmod(0o755)
    return ctr


def _archive(tmp_path: Path, kind: str, name: str, key: str) -> images.Image:
    archive = tmp_path / f"{kind}-{key}.tar"
    archive.write_text(name)
    return images.Image(kind, name, key * 64, archive)


def test_import_images_imports_into_the_cri_namespace_once_per_key(tmp_path):
    ctr, socket = _fake_ctr(tmp_path), tmp_path / "containerd.sock"
    sandbox = _archive(tmp_path, "sandbox", "localhost/kontainers/sandbox:abc", "a")
    pause = _archive(tmp_path, "pause", "registry.k8s.io/pause:3.10.1", "p")
    assert images.import_images(ctr, socket, [sandbox, pause]) == [sandbox.name, pause.name]
    imports = [line for line in (tmp_path / "calls").read_text().splitlines() if "images import" in line]
    assert imports[0] == (f"--address {socket} --namespace k8s.io images import "
                          f"--label {images.KEY_LABEL}={sandbox.key} {sandbox.archive}")

    # Already there with the same key: nothing to do; a rebuilt pause (same name) is imported again.
    assert images.import_images(ctr, socket, [sandbox, pause]) == []
    rebuilt = _archive(tmp_path, "pause", "registry.k8s.io/pause:3.10.1", "q")
    assert images.import_images(ctr, socket, [sandbox, rebuilt]) == [rebuilt.name]


def test_import_images_fails_when_containerd_does_not_list_the_name(tmp_path):
    unnamed = _archive(tmp_path, "pause", "", "p")  # the fake lists nothing for it
    unnamed = images.Image("pause", "registry.k8s.io/pause:3.10.1", unnamed.key, unnamed.archive)
    with pytest.raises(images.BuildError, match="pause:3.10.1"):
        images.import_images(_fake_ctr(tmp_path), tmp_path / "containerd.sock", [unnamed])
