"""Build the local control plane's binaries from the pinned Go modules.

Each tool of `pins.TOOLS` has a scratch Go module under `hack/toolchain/<tool>/` whose
go.mod/go.sum are committed. Binaries land in a cache outside the checkout, keyed by a hash
of the pins, the modules and the Go version, so every clone on a machine reuses them:
`${KONTAINERS_BIN_DIR:-${XDG_CACHE_HOME:-~/.cache}/kontainers/bin/<pin-hash>}`.

    python -m kontainers.cluster.build              # build what is missing, print the dir
    python -m kontainers.cluster.build --regenerate # rewrite the scratch modules from pins
"""

from __future__ import annotations

import argparse
import datetime
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kontainers.cluster.pins import TOOLS, GoTool

REPO_ROOT = Path(__file__).resolve().parents[3]
TOOLCHAIN_DIR = REPO_ROOT / "hack" / "toolchain"
SCRATCH_MODULE_PREFIX = "kontainers.dev/toolchain/"


class BuildError(RuntimeError):
    pass


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Upstream release settings (hack/lib/golang.sh): static binaries, no toolchain download.
    env.update(CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-mod=mod")
    return env


def _go(*args: str, cwd: Path, capture: bool = False) -> str:
    proc = subprocess.run(
        ["go", *args],
        cwd=cwd,
        env=_go_env(),
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    if proc.returncode != 0:
        detail = (proc.stderr or "")[-4000:] if capture else ""
        raise BuildError(f"go {' '.join(args)} failed in {cwd} (exit {proc.returncode})\n{detail}")
    return proc.stdout or ""


@functools.lru_cache(maxsize=None)
def go_version() -> str:
    return _go("env", "GOVERSION", cwd=Path.cwd(), capture=True).strip()


def module_dir(tool_name: str) -> Path:
    return TOOLCHAIN_DIR / tool_name


def pin_hash() -> str:
    """A short digest of everything that decides the binaries' bytes."""
    digest = hashlib.sha256()
    digest.update(go_version().encode())
    for name in sorted(TOOLS):
        tool = TOOLS[name]
        digest.update(json.dumps([name, tool.module, tool.version, tool.binaries], sort_keys=True).encode())
        digest.update(_stable_ldflags(tool).encode())
        for file in ("go.mod", "go.sum"):
            path = module_dir(name) / file
            digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:16]


def tool_hash(name: str) -> str:
    """A digest of what decides one tool's binaries (its pin, scratch module and Go version)."""
    tool = TOOLS[name]
    digest = hashlib.sha256(go_version().encode())
    digest.update(json.dumps([name, tool.module, tool.version, tool.binaries], sort_keys=True).encode())
    digest.update(_stable_ldflags(tool).encode())
    for file in ("go.mod", "go.sum"):
        path = module_dir(name) / file
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def cache_root() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "kontainers" / "bin"


def bin_dir() -> Path:
    override = os.environ.get("KONTAINERS_BIN_DIR")
    if override:
        return Path(override)
    return cache_root() / pin_hash()


# --- scratch modules -----------------------------------------------------------------------


def _downloaded_gomod(module: str, version: str) -> str:
    info = json.loads(_go("mod", "download", "-json", f"{module}@{version}", cwd=Path.cwd(), capture=True))
    return Path(info["GoMod"]).read_text()


def staging_replacements(kubernetes_gomod: str, version: str) -> dict[str, str]:
    """Map every staging module of k8s.io/kubernetes to its published tag (v1.X.Y → v0.X.Y).

    k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with local
    directories, which a dependent module cannot see; the published tags hold the same code.
    """
    staging_version = "v0" + version[2:]
    replacements = {}
    for line in kubernetes_gomod.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "=>" and parts[2].startswith("./staging/src/"):
            replacements[parts[0]] = staging_version
    if not replacements:
        raise BuildError("no staging replace lines found in k8s.io/kubernetes go.mod")
    return replacements


def _godebug_line(gomod: str) -> str | None:
    # godebug only applies in the main module, so the scratch module must repeat it.
    for line in gomod.splitlines():
        if line.startswith("godebug "):
            return line
    return None


def render_gomod_header(name: str, tool: GoTool, upstream_gomod: str) -> str:
    go_line = next(line for line in upstream_gomod.splitlines() if line.startswith("go "))
    lines = [
        f"// Generated by `python -m kontainers.cluster.build --regenerate` from kontainers/cluster/pins.py.",
        f"module {SCRATCH_MODULE_PREFIX}{name}",
        "",
        go_line,
    ]
    godebug = _godebug_line(upstream_gomod)
    if godebug:
        lines.append(godebug)
    lines += ["", f"require {tool.module} {tool.version}", ""]
    if tool.module == "k8s.io/kubernetes":
        lines.append("replace (")
        for staged, version in sorted(staging_replacements(upstream_gomod, tool.version).items()):
            lines.append(f"\t{staged} => {staged} {version}")
        lines.append(")")
    return "\n".join(lines) + "\n"


def regenerate(name: str) -> None:
    tool = TOOLS[name]
    directory = module_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    upstream = _downloaded_gomod(tool.module, tool.version)
    (directory / "go.mod").write_text(render_gomod_header(name, tool, upstream))
    (directory / "go.sum").unlink(missing_ok=True)
    # Every package is pinned explicitly: without @version `go get` picks the newest release.
    _go("get", "-tool", *(f"{pkg}@{tool.version}" for pkg in tool.binaries.values()), cwd=directory)
    _go("mod", "tidy", cwd=directory)


# --- building ------------------------------------------------------------------------------


def _ldflags(tool: GoTool) -> str:
    flags = ["-s", "-w"]
    if tool.module == "k8s.io/kubernetes":
        major, minor = tool.version.lstrip("v").split(".")[:2]
        build_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [
                f"-X {pkg}.gitVersion={tool.version}",
                f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=clean",
                f"-X {pkg}.buildDate={build_date}",
            ]
    elif tool.module == "helm.sh/helm/v3":
        flags.append(f"-X helm.sh/helm/v3/internal/version.version={tool.version}")
        # As helm's Makefile does: the Kubernetes version assumed by offline lint/template is
        # that of the client-go it links, not the built-in 1.20 default.
        major, minor = _client_go_kube_version(module_dir("helm") / "go.mod")
        for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
            flags += [f"-X {pkg}.k8sVersionMajor={major}", f"-X {pkg}.k8sVersionMinor={minor}"]
    return " ".join(flags)


def _client_go_kube_version(gomod: Path) -> tuple[str, str]:
    """(major, minor) of Kubernetes matching the k8s.io/client-go v0.X.Y a module requires."""
    for line in gomod.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "k8s.io/client-go":
            return "1", parts[1].split(".")[1]
    raise BuildError(f"{gomod} does not require k8s.io/client-go")


def _stable_ldflags(tool: GoTool) -> str:
    """The ldflags without the build date: part of a tool's identity in the cache."""
    return " ".join(f for f in _ldflags(tool).split(" -X ") if "buildDate=" not in f)


class _Progress:
    """Prints elapsed time every `interval` seconds while a long build runs."""

    def __init__(self, label: str, interval: float = 30.0) -> None:
        self.label, self.interval = label, interval
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            print(f"[build] {self.label}: still building ({self.elapsed():.0f}s)", flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> "_Progress":
        print(f"[build] {self.label}: building", flush=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def missing_binaries(target: Path) -> dict[str, list[str]]:
    return {
        name: [binary for binary in tool.binaries if not (target / binary).is_file()]
        for name, tool in TOOLS.items()
        if any(not (target / binary).is_file() for binary in tool.binaries)
    }


def go_output_name(package: str) -> str:
    """The file name `go build -o dir/` gives a package's binary.

    Go drops a trailing major-version element: go.etcd.io/etcd/server/v3 builds `server`.
    """
    elements = package.split("/")
    last = elements[-1]
    if len(elements) > 1 and last[:1] == "v" and last[1:].isdigit():
        return elements[-2]
    return last


def build_tool(name: str, binaries: list[str], target: Path) -> float:
    tool = TOOLS[name]
    directory = module_dir(name)
    if not (directory / "go.sum").exists():
        raise BuildError(f"{directory}/go.sum is missing: run with --regenerate")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".build-") as scratch:
        with _Progress(f"{', '.join(binaries)} ({tool.module} {tool.version})") as progress:
            _go(
                "build",
                "-trimpath",
                "-tags=selinux,notest",
                f"-ldflags={_ldflags(tool)}",
                "-o",
                scratch + "/",
                *(tool.binaries[binary] for binary in binaries),
                cwd=directory,
            )
            for binary in binaries:
                built = Path(scratch) / go_output_name(tool.binaries[binary])
                if not built.exists():
                    candidates = sorted(p.name for p in Path(scratch).iterdir())
                    raise BuildError(f"{binary} not produced; got {candidates}")
                os.replace(built, target / binary)  # atomic: a half-built binary is never visible
        print(f"[build] {', '.join(binaries)}: done in {progress.elapsed():.0f}s", flush=True)
        return progress.elapsed()


# Each bin dir records, per tool, the tool_hash its binaries were built from (.tools/<name>),
# so a change of one pin (a new pin-hash dir) reuses the other tools' binaries instead of
# rebuilding them all.


def _record_built(target: Path, name: str, digest: str) -> None:
    (target / ".tools").mkdir(parents=True, exist_ok=True)
    (target / ".tools" / name).write_text(digest)


def reuse_identical_build(name: str, binaries: list[str], target: Path, digest: str) -> Path | None:
    """Link `binaries` from another cache dir built from the same `digest`; return that dir."""
    root = cache_root()
    for sibling in sorted(root.iterdir()) if root.is_dir() else []:
        marker = sibling / ".tools" / name
        if sibling == target or not marker.is_file() or marker.read_text() != digest:
            continue
        if not all((sibling / binary).is_file() for binary in binaries):
            continue
        target.mkdir(parents=True, exist_ok=True)
        for binary in binaries:
            partial = target / f".{binary}.partial"
            partial.unlink(missing_ok=True)
            try:
                os.link(sibling / binary, partial)
            except OSError:  # another filesystem
                shutil.copy2(sibling / binary, partial)
            os.replace(partial, target / binary)
        _record_built(target, name, digest)
        return sibling
    return None


def ensure_built(target: Path | None = None) -> Path:
    """Build every missing binary; return the directory holding them all."""
    target = target or bin_dir()
    missing = missing_binaries(target)
    if target == cache_root() / pin_hash():  # named by the current pins: its binaries match them
        for name in TOOLS.keys() - missing.keys():
            if not (target / ".tools" / name).is_file():
                _record_built(target, name, tool_hash(name))
    if not missing:
        return target
    if shutil.which("go") is None:
        raise BuildError("Go is required to build the control plane binaries (https://go.dev/dl)")
    started = time.monotonic()
    for name, binaries in missing.items():
        digest = tool_hash(name)
        source = reuse_identical_build(name, binaries, target, digest)
        if source:
            print(f"[build] {', '.join(binaries)}: reused the identical build in {source}", flush=True)
            continue
        build_tool(name, binaries, target)
        _record_built(target, name, digest)
    print(f"[build] all binaries ready in {target} ({time.monotonic() - started:.0f}s)", flush=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kontainers.cluster.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regenerate", action="store_true", help="rewrite hack/toolchain/* from pins.py")
    parser.add_argument("--print-dir", action="store_true", help="only print the binary directory")
    args = parser.parse_args(argv)
    try:
        if args.regenerate:
            for name in TOOLS:
                print(f"[build] regenerating {module_dir(name)}", flush=True)
                regenerate(name)
        if args.print_dir:
            print(bin_dir())
            return 0
        print(ensure_built())
    except BuildError as exc:
        print(f"[build] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
