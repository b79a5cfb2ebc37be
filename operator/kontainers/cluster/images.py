"""Build the local node's container images without a registry, cached by their inputs.

Four images, each built here from its sources, none pulled:

- base: a Debian bookworm minbase rootfs made by debootstrap from the mirror apt uses, with the
  packages of images/base/packages.txt (only in the builder's storage, the others start FROM it);
- kontainers: the project's own Dockerfile, built FROM the base through its BASE_IMAGE argument;
- sandbox: images/sandbox/Containerfile, the runtime of the sandbox pods;
- pause: Kubernetes' build/pause/linux/pause.c linked statically, named as containerd's default
  sandbox image so the node never pulls it.

Every image is keyed by a hash of what decides its bytes (its Containerfile, the base's key, the
project sources, pause.c and the gcc version); its archive lands in
`${XDG_CACHE_HOME:-~/.cache}/kontainers/images/archives/<image>-<key>.tar`, and an archive present
is a cache hit. `buildah bud --layers` keeps the builder's storage (and so its layer cache) in
`.../kontainers/images/storage-<driver>/`, never in /var/lib/containers.

    python -m kontainers.cluster.images            # build what is missing, print the archives
    python -m kontainers.cluster.images --names    # print "name<TAB>archive" lines instead
    python -m kontainers.cluster.images --clean    # drop the builder's storage (layer cache)

The Debian packages these builds need on the host are listed in images/build-host-packages.txt.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kontainers.cluster.pins import KUBERNETES_VERSION
from kontainers.cluster.progress import Progress

REPO_ROOT = Path(__file__).resolve().parents[3]
IMAGES_DIR = REPO_ROOT / "images"
DOCKERFILE = REPO_ROOT / "Dockerfile"
BASE_CONTAINERFILE = IMAGES_DIR / "base" / "Containerfile"
BASE_PACKAGES_FILE = IMAGES_DIR / "base" / "packages.txt"
SANDBOX_CONTAINERFILE = IMAGES_DIR / "sandbox" / "Containerfile"
PAUSE_CONTAINERFILE = IMAGES_DIR / "pause" / "Containerfile"
HOST_PACKAGES_FILE = IMAGES_DIR / "build-host-packages.txt"

DEBIAN_SUITE = "bookworm"
DEFAULT_DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian's, which its pip and curl read
# The project sources the kontainers image is built from (the Dockerfile's COPY lines).
KONTAINERS_SOURCES = ("pyproject.toml", "README.md", "operator")

# containerd 2.2's default sandbox image (DefaultSandboxImage in internal/cri/config/config.go);
# the node's containerd config pins it, so the tag only has to match.
PAUSE_TAG = "3.10.1"
PAUSE_IMAGE = f"registry.k8s.io/pause:{PAUSE_TAG}"
PAUSE_SOURCE = "build/pause/linux/pause.c"  # inside the k8s.io/kubernetes module
PAUSE_CFLAGS = ("-static", "-O2", "-Wall", "-Werror", "-s", f"-DVERSION=v{PAUSE_TAG}-{KUBERNETES_VERSION}")

REPOSITORY_PREFIX = "localhost/kontainers"
# `buildah push` writes docker-archive tarballs: `ctr images import` names each image after the
# archive's RepoTags without further flags.
ARCHIVE_TRANSPORT = "docker-archive"
ARCHIVES_KEPT = 2  # per image: the newest archives; older ones are removed after a build
PROGRESS_INTERVAL = 30.0
KINDS = ("kontainers", "sandbox", "pause")


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Image:
    """One image of the local node: the name it is imported under and its archive."""

    kind: str
    name: str
    key: str
    archive: Path

    @property
    def built(self) -> bool:
        return self.archive.is_file()


@dataclass(frozen=True)
class NodeImages:
    kontainers: Image
    sandbox: Image
    pause: Image

    def __iter__(self) -> Iterator[Image]:
        return iter((self.kontainers, self.sandbox, self.pause))

    def archives(self) -> list[Path]:
        return [image.archive for image in self]


# --- where things live -----------------------------------------------------------------------


def cache_root() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "kontainers" / "images"


def archives_dir() -> Path:
    return cache_root() / "archives"


def storage_driver() -> str:
    """overlay (the default) or vfs, from KONTAINERS_IMAGES_STORAGE_DRIVER."""
    return os.environ.get("KONTAINERS_IMAGES_STORAGE_DRIVER") or "overlay"


def storage_dir() -> Path:
    return cache_root() / f"storage-{storage_driver()}"


def _archive_path(kind: str, key: str) -> Path:
    return archives_dir() / f"{kind}-{key[:16]}.tar"


# --- inputs and keys -------------------------------------------------------------------------


def _digest(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))  # length-prefixed: no two part lists collide
        digest.update(data)
    return digest.hexdigest()


def read_list(path: Path) -> list[str]:
    """The entries of a one-a-line list file, without comments and blank lines."""
    return [entry for line in path.read_text().splitlines() if (entry := line.split("#", 1)[0].strip())]


def base_packages() -> list[str]:
    return read_list(BASE_PACKAGES_FILE)


def host_packages() -> list[str]:
    """The Debian packages the image builds need on the host (for .ci/run)."""
    return read_list(HOST_PACKAGES_FILE)


def _sources_entries(path: Path) -> Iterator[tuple[list[str], str, list[str]]]:
    """(types, uri, suites) of an apt sources file, one-line (.list) or deb822 (.sources)."""
    text = path.read_text(errors="replace")
    if path.suffix == ".list":
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()  # drop [options]
            if len(words) >= 3:
                yield [words[0]], words[1], [words[2]]
        return
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            name, value = line.split(":", 1)
            fields[name.strip().lower()] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            yield fields.get("types", "").split(), uri, fields.get("suites", "").split()


def apt_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt uses for bookworm (KONTAINERS_DEBIAN_MIRROR overrides it)."""
    override = os.environ.get("KONTAINERS_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    files = [apt_dir / "sources.list"] if (apt_dir / "sources.list").is_file() else []
    directory = apt_dir / "sources.list.d"
    if directory.is_dir():
        files += sorted(p for p in directory.iterdir() if p.suffix in (".list", ".sources"))
    for path in files:
        for types, uri, suites in _sources_entries(path):
            if "deb" in types and DEBIAN_SUITE in suites:
                return uri.rstrip("/")
    return DEFAULT_DEBIAN_MIRROR


def base_key(mirror: str | None = None) -> str:
    mirror = mirror or apt_mirror()
    return _digest("base", DEBIAN_SUITE, "minbase", mirror, "\n".join(base_packages()),
                   "\n".join(ROOTFS_REMOVED), ROOTFS_DPKG_EXCLUDES, BASE_CONTAINERFILE.read_bytes())


def kontainers_sources(root: Path = REPO_ROOT) -> list[Path]:
    """The files the kontainers image is built from, relative to `root`, sorted.

    The tracked files of pyproject.toml, README.md and operator/ plus new ones git does not
    ignore (so no __pycache__ or egg-info); a tree without git is walked instead.
    """
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
             "--", *KONTAINERS_SOURCES],
            check=True, capture_output=True,
        ).stdout.decode().split("\0")
        files = {Path(name) for name in listed if name}
    except (OSError, subprocess.CalledProcessError):
        files = set()
        for source in KONTAINERS_SOURCES:
            path = root / source
            if path.is_file():
                files.add(Path(source))
            for file in path.rglob("*") if path.is_dir() else ():
                parts = file.relative_to(root).parts
                if file.is_file() and not any(p == "__pycache__" or p.endswith(".egg-info") for p in parts):
                    files.add(file.relative_to(root))
    return sorted(f for f in files if (root / f).is_file())  # a deleted tracked file is gone


def kontainers_key(base: str, root: Path = REPO_ROOT, dockerfile: Path = DOCKERFILE) -> str:
    parts: list[str | bytes] = ["kontainers", dockerfile.read_bytes(), base]
    for relative in kontainers_sources(root):
        path = root / relative
        parts += [relative.as_posix(), b"x" if os.access(path, os.X_OK) else b"-", path.read_bytes()]
    return _digest(*parts)


def sandbox_key(base: str, containerfile: Path = SANDBOX_CONTAINERFILE) -> str:
    return _digest("sandbox", containerfile.read_bytes(), base)


@functools.lru_cache(maxsize=None)
def gcc_version() -> str:
    _require("gcc")
    out = subprocess.run(["gcc", "-dumpfullversion", "-dumpversion"], capture_output=True, text=True)
    machine = subprocess.run(["gcc", "-dumpmachine"], capture_output=True, text=True)
    return f"{out.stdout.strip()} {machine.stdout.strip()}"


def _gomodcache() -> Path:
    _require("go", "Go (https://go.dev/dl) finds pause.c in the k8s.io/kubernetes module")
    out = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise BuildError(f"go env GOMODCACHE failed: {out.stderr.strip()}")
    return Path(out.stdout.strip())


def pause_source(download: bool = True) -> Path:
    """pause.c of k8s.io/kubernetes@KUBERNETES_VERSION from the Go module cache."""
    source = _gomodcache() / f"k8s.io/kubernetes@{KUBERNETES_VERSION}" / PAUSE_SOURCE
    if source.is_file() or not download:
        return source
    proc = subprocess.run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
                          capture_output=True, text=True, cwd=tempfile.gettempdir(),
                          env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"})
    if proc.returncode != 0:
        raise BuildError(f"go mod download k8s.io/kubernetes@{KUBERNETES_VERSION} failed:\n"
                         f"{(proc.stdout + proc.stderr)[-2000:]}")
    source = Path(json.loads(proc.stdout)["Dir"]) / PAUSE_SOURCE
    if not source.is_file():
        raise BuildError(f"{source} is missing from k8s.io/kubernetes@{KUBERNETES_VERSION}")
    return source


def pause_key(source: Path | None = None) -> str:
    source = source or pause_source()
    return _digest("pause", source.read_bytes(), gcc_version(), " ".join(PAUSE_CFLAGS),
                   PAUSE_CONTAINERFILE.read_bytes(), PAUSE_IMAGE)


def base_image_name(key: str) -> str:
    return f"{REPOSITORY_PREFIX}/base:{key[:12]}"


def planned_images() -> NodeImages:
    """The images (names, keys, archive paths) the current sources give, built or not."""
    base = base_key()
    keys = {"kontainers": kontainers_key(base), "sandbox": sandbox_key(base), "pause": pause_key()}
    names = {
        "kontainers": f"{REPOSITORY_PREFIX}/kontainers:{keys['kontainers'][:12]}",
        "sandbox": f"{REPOSITORY_PREFIX}/sandbox:{keys['sandbox'][:12]}",
        "pause": PAUSE_IMAGE,
    }
    return NodeImages(**{kind: Image(kind, names[kind], keys[kind], _archive_path(kind, keys[kind]))
                         for kind in keys})


# --- running tools ---------------------------------------------------------------------------


def _require(tool: str, why: str = "") -> str:
    path = shutil.which(tool)
    if path is None:
        hint = why or f"install the Debian packages of {HOST_PACKAGES_FILE.relative_to(REPO_ROOT)}"
        raise BuildError(f"{tool} is required to build the local node's images ({hint})")
    return path


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], log: Path, cwd: Path | None = None) -> None:
    """Run `cmd` with its output appended to `log`; on failure raise with the log's tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        what = Path(cmd[0]).name
        if what == "buildah":  # name the subcommand, not the storage flags before it
            what += " " + next(word for word in cmd[len(_buildah_base()):] if not word.startswith("-"))
        raise BuildError(f"{what} failed (exit {proc.returncode}); log {log}:\n"
                         + "\n".join(tail))


def _buildah_base() -> list[str]:
    storage = storage_dir()
    return [_require("buildah"), "--root", str(storage / "root"), "--runroot", str(storage / "run"),
            "--storage-driver", storage_driver()]


def _buildah_has_image(name: str) -> bool:
    proc = subprocess.run([*_buildah_base(), "inspect", "--type", "image", name],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc.returncode == 0


def host_ca_bundle() -> Path | None:
    """The CA bundle this host trusts (KONTAINERS_IMAGES_CA_BUNDLE, PIP_CERT, SSL_CERT_FILE or
    Debian's), lent to the builds' RUN steps: PyPI may sit behind a TLS proxy only it trusts."""
    for candidate in (os.environ.get("KONTAINERS_IMAGES_CA_BUNDLE"), os.environ.get("PIP_CERT"),
                      os.environ.get("SSL_CERT_FILE"), IMAGE_CA_BUNDLE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _bud(containerfile: Path, context: Path, name: str, log: Path, build_args: dict[str, str]) -> None:
    cmd = [*_buildah_base(), "bud", "--layers", "--isolation", "chroot", "--pull=never",
           "-f", str(containerfile), "-t", name]
    bundle = host_ca_bundle()
    if bundle:  # a bind mount of RUN steps only: no layer carries it
        cmd += ["--volume", f"{bundle}:{IMAGE_CA_BUNDLE}:ro"]
    for arg, value in build_args.items():
        cmd += ["--build-arg", f"{arg}={value}"]
    _run([*cmd, str(context)], log)


def _push_archive(name: str, archive: Path, log: Path) -> None:
    """Write `name` from the builder's storage to `archive`, atomically."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(f".{archive.name}.partial")
    partial.unlink(missing_ok=True)
    _run([*_buildah_base(), "push", "--quiet", name, f"{ARCHIVE_TRANSPORT}:{partial}:{name}"], log)
    os.replace(partial, archive)


def _remove_superseded(keep: Iterable[str]) -> None:
    """Remove from the builder's storage the images of our repositories not in `keep`.

    Their archives stay; the layer cache (untagged intermediate images) stays too, so going
    back to an older source tree rebuilds from cached layers.
    """
    keep = set(keep)
    listed = subprocess.run([*_buildah_base(), "images", "--format", "{{.Name}}:{{.Tag}}"],
                            capture_output=True, text=True)
    stale = [name for name in listed.stdout.split()
             if name.startswith(REPOSITORY_PREFIX + "/") and name not in keep]
    # Images built on an older base go first, so the base has no children left when its turn comes.
    for name in sorted(stale, key=lambda n: n.startswith(f"{REPOSITORY_PREFIX}/base:")):
        subprocess.run([*_buildah_base(), "rmi", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _scratch_dir(prefix: str) -> tempfile.TemporaryDirectory:
    (cache_root() / "tmp").mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=cache_root() / "tmp", prefix=prefix)


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One builder at a time per cache (a second waits, then finds the images built)."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with (cache_root() / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _prune_archives(kind: str, keep: Path) -> None:
    older = sorted((p for p in archives_dir().glob(f"{kind}-*.tar") if p != keep),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in older[ARCHIVES_KEPT - 1:]:
        stale.unlink(missing_ok=True)


# --- the base rootfs -------------------------------------------------------------------------


def _mounts_under(directory: Path) -> list[Path]:
    prefix = str(directory.resolve())
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(Path(point))
    return sorted(mounts, key=lambda p: len(p.parts), reverse=True)


def _remove_tree(directory: Path) -> None:
    """rmtree, after unmounting what a failed debootstrap may have left mounted inside."""
    for mount in _mounts_under(directory):
        subprocess.run(["umount", "--lazy", str(mount)], stderr=subprocess.DEVNULL)
    if _mounts_under(directory):  # never delete through a mount of the host's /proc, /sys or /dev
        raise BuildError(f"{directory} still has mounts inside; unmount them and remove it by hand")
    shutil.rmtree(directory, ignore_errors=True)


def _rootfs_tar(key: str) -> Path:
    return cache_root() / "rootfs" / f"base-{key[:16]}.tar"


def build_rootfs(key: str, mirror: str, log: Path) -> Path:
    """debootstrap the base rootfs into a tarball (kept, so a wiped storage needs no download)."""
    tarball = _rootfs_tar(key)
    if tarball.is_file():
        return tarball
    debootstrap = _require("debootstrap")
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root to build the base rootfs")
    if not DEBIAN_KEYRING.is_file():
        raise BuildError(f"{DEBIAN_KEYRING} is missing (Debian package debian-archive-keyring)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with _scratch_dir("rootfs-") as scratch:
        target = Path(scratch) / "rootfs"
        try:
            with Progress(f"base rootfs (debootstrap {DEBIAN_SUITE} from {mirror})", _log, PROGRESS_INTERVAL):
                _run([debootstrap, "--variant=minbase", f"--include={','.join(base_packages())}",
                      f"--keyring={DEBIAN_KEYRING}", DEBIAN_SUITE, str(target), mirror], log)
                _clean_rootfs(target)
                partial = tarball.with_name(f".{tarball.name}.partial")
                _run(["tar", "--numeric-owner", "--sort=name", "-C", str(target), "-cf", str(partial), "."], log)
                os.replace(partial, tarball)
        finally:
            _remove_tree(target)
    for stale in tarball.parent.glob("base-*.tar"):
        if stale != tarball:
            stale.unlink(missing_ok=True)
    return tarball


# What the base rootfs does not carry (all part of its key): downloaded debs, apt lists, the
# host's names, logs, and, as Debian's own slim images, the docs, man pages and translations,
# which dpkg then also skips in images built on it.
ROOTFS_REMOVED = ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                  "var/log/*.log", "var/log/apt/*", "dev/*", "tmp/*", "etc/resolv.conf", "etc/hostname",
                  "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*", "usr/share/lintian/*")
ROOTFS_DPKG_EXCLUDES = """\
# Added by kontainers.cluster.images, as in Debian's slim images.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""


def _clean_rootfs(target: Path) -> None:
    for pattern in ROOTFS_REMOVED:
        for path in target.glob(pattern):
            _remove_path(path)
    for path in target.glob("usr/share/doc/*/*"):
        if path.name != "copyright":
            _remove_path(path)
    (target / "etc/dpkg/dpkg.cfg.d/kontainers-slim").write_text(ROOTFS_DPKG_EXCLUDES)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def ensure_base(key: str | None = None) -> str:
    """The base image in the builder's storage (built from the cached rootfs); its name."""
    mirror = apt_mirror()
    key = key or base_key(mirror)
    name = base_image_name(key)
    if _buildah_has_image(name):
        return name
    log = cache_root() / "logs" / "base.log"
    log.unlink(missing_ok=True)
    tarball = build_rootfs(key, mirror, log)
    with _scratch_dir("base-") as scratch:
        os.link(tarball, Path(scratch) / "rootfs.tar")
        with Progress(f"base image {name}", _log, PROGRESS_INTERVAL):
            _bud(BASE_CONTAINERFILE, Path(scratch), name, log, {})
    return name


# --- the images ------------------------------------------------------------------------------


def _stage_kontainers_context(directory: Path) -> None:
    for relative in kontainers_sources():
        destination = directory / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / relative, destination)


def build_image(image: Image, base: str | None) -> float:
    """Build one image into the builder's storage and write its archive; the seconds it took."""
    log = cache_root() / "logs" / f"{image.kind}.log"
    log.unlink(missing_ok=True)
    with _scratch_dir(f"{image.kind}-") as scratch, Progress(f"{image.kind} image {image.name}", _log, PROGRESS_INTERVAL) as progress:
        context = Path(scratch)
        if image.kind == "kontainers":
            _stage_kontainers_context(context)
            _bud(DOCKERFILE, context, image.name, log, {"BASE_IMAGE": base or ""})
        elif image.kind == "sandbox":
            _bud(SANDBOX_CONTAINERFILE, context, image.name, log, {"BASE_IMAGE": base or ""})
        elif image.kind == "pause":
            gcc = _require("gcc")
            _run([gcc, *PAUSE_CFLAGS, "-o", str(context / "pause"), str(pause_source())], log)
            _bud(PAUSE_CONTAINERFILE, context, image.name, log, {})
        else:
            raise BuildError(f"unknown image kind {image.kind}")
        _push_archive(image.name, image.archive, log)
    _prune_archives(image.kind, image.archive)
    return progress.elapsed()


def ensure_images(kinds: Iterable[str] | None = None) -> NodeImages:
    """Build every missing image (or only `kinds`); return the node's images."""
    planned = planned_images()
    wanted = [image for image in planned if kinds is None or image.kind in set(kinds)]
    if all(image.built for image in wanted):
        return planned
    with _lock():
        missing = [image for image in wanted if not image.built]  # another builder may have finished
        if not missing:
            return planned
        _require("buildah")  # before any step, so a missing builder is named first
        started = time.monotonic()
        base = None
        if any(image.kind in ("kontainers", "sandbox") for image in missing):
            base = ensure_base()
        for image in missing:
            build_image(image, base)
        _remove_superseded([image.name for image in planned] + [base_image_name(base_key())])
        _log(f"images ready in {archives_dir()} ({time.monotonic() - started:.0f}s)")
    return planned


def run_in_image(image: Image | str, *command: str, user: str | None = None) -> subprocess.CompletedProcess:
    """Run `command` in a throwaway container (chroot isolation, the image's own user unless
    `user`) of an Image's archive, or of an image named in the builder's storage; output as text."""
    source = ["docker-archive:" + str(image.archive)] if isinstance(image, Image) else ["--pull=never", image]
    created = subprocess.run([*_buildah_base(), "from", "--quiet", *source], capture_output=True, text=True)
    if created.returncode != 0:
        raise BuildError(f"buildah from {source[-1]} failed: {created.stderr.strip()}")
    container = created.stdout.strip()
    try:
        flags = ["--user", user] if user else []
        return subprocess.run([*_buildah_base(), "run", "--isolation", "chroot", *flags, container, "--", *command],
                              capture_output=True, text=True)
    finally:
        subprocess.run([*_buildah_base(), "rm", container], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def archive_config(archive: Path) -> tuple[list[str], dict]:
    """(RepoTags, image config) of a docker-archive tarball."""
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]
        config = json.load(tar.extractfile(manifest["Config"]))
    return manifest["RepoTags"], config


# --- containerd ------------------------------------------------------------------------------


KEY_LABEL = "dev.kontainers.image-key"  # on images imported into containerd: the key they were built from


def _containerd_keys(base: list[str]) -> dict[str, str]:
    """name → KEY_LABEL value of the images containerd lists (no label: empty)."""
    listed = subprocess.run([*base, "images", "list"], capture_output=True, text=True)
    if listed.returncode != 0:
        raise BuildError(f"ctr images list failed: {listed.stderr.strip()[-2000:]}")
    keys = {}
    for line in listed.stdout.splitlines()[1:]:
        fields = line.split()
        if not fields:
            continue
        labels = dict(label.split("=", 1) for label in fields[-1].split(",") if "=" in label)
        keys[fields[0]] = labels.get(KEY_LABEL, "")
    return keys


def import_images(ctr: Path, address: Path, archives: Iterable[Image | Path],
                  namespace: str = "k8s.io") -> list[str]:
    """Import image archives into containerd's `namespace` (the CRI's); the names imported.

    An `Image` is labelled with its key and skipped when containerd already holds it under its
    name with that key (the pause image keeps its name across rebuilds); afterwards it must be
    listed under its name.
    """
    base = [str(ctr), "--address", str(address), "--namespace", namespace]
    present = _containerd_keys(base)
    imported = []
    for item in archives:
        image = item if isinstance(item, Image) else None
        if image and present.get(image.name) == image.key:
            continue
        archive = image.archive if image else Path(item)
        labels = ["--label", f"{KEY_LABEL}={image.key}"] if image else []
        proc = subprocess.run([*base, "images", "import", *labels, str(archive)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"ctr images import {archive} failed (exit {proc.returncode}):\n"
                             f"{(proc.stdout + proc.stderr)[-2000:]}")
        if image:
            imported.append(image.name)
    present = _containerd_keys(base)
    absent = [name for name in imported if name not in present]
    if absent:
        raise BuildError(f"after the import containerd does not list {absent} (it lists {sorted(present)})")
    return imported


# --- housekeeping ----------------------------------------------------------------------------


def clean_storage() -> None:
    """Remove the builder's storage (its layer cache); archives and the rootfs stay."""
    storage = storage_dir()
    if not storage.exists():
        return
    subprocess.run([*_buildah_base(), "rm", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([*_buildah_base(), "rmi", "--all", "--force"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _remove_tree(storage)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kontainers.cluster.images", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kinds", nargs="*", metavar="IMAGE",
                        help="only these images: kontainers, sandbox, pause (default: all)")
    parser.add_argument("--names", action="store_true", help='print "name<TAB>archive" lines')
    parser.add_argument("--clean", action="store_true", help="remove the builder's storage first")
    parser.add_argument("--host-packages", action="store_true",
                        help="only print the Debian packages the builds need on the host")
    args = parser.parse_args(argv)
    unknown = set(args.kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown images {sorted(unknown)}; choose from {', '.join(KINDS)}")
    try:
        if args.host_packages:
            print(" ".join(host_packages()))
            return 0
        if args.clean:
            with _lock():
                clean_storage()
        images = ensure_images(args.kinds or None)
    except BuildError as exc:
        print(f"[images] error: {exc}", file=sys.stderr)
        return 1
    for image in images:
        if not args.kinds or image.kind in args.kinds:
            print(f"{image.name}\t{image.archive}" if args.names else image.archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
