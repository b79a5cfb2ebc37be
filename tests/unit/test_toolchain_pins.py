"""The committed scratch Go modules (hack/toolchain/*) agree with kontainers/cluster/pins.py."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from kontainers.cluster import build
from kontainers.cluster.pins import KUBERNETES_VERSION, TOOLS


def parse_gomod(text: str) -> dict[str, list[tuple[str, ...]]]:
    """The directives of a go.mod: {"require": [(path, version)], "replace": [(old, new, version)], …}."""
    directives: dict[str, list[tuple[str, ...]]] = {}
    block: str | None = None
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if block:
            if line == ")":
                block = None
                continue
            verb, rest = block, line
        else:
            verb, _, rest = line.partition(" ")
            if rest.strip() == "(":
                block = verb
                continue
        tokens = [token for token in rest.split() if token != "=>"]
        directives.setdefault(verb, []).append(tuple(tokens))
    return directives


def test_parse_gomod_reads_blocks_and_single_lines():
    parsed = parse_gomod(
        "module m\n\ngo 1.26.0\nrequire a v1 // indirect\nrequire (\n\tb v2\n)\n"
        "replace (\n\tc => c v3\n)\ntool x/y\n"
    )
    assert parsed["module"] == [("m",)]
    assert parsed["require"] == [("a", "v1"), ("b", "v2")]
    assert parsed["replace"] == [("c", "c", "v3")]
    assert parsed["tool"] == [("x/y",)]


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_scratch_module_matches_its_pin(name):
    tool = TOOLS[name]
    directory = build.module_dir(name)
    gomod = parse_gomod((directory / "go.mod").read_text())
    assert gomod["module"] == [(build.SCRATCH_MODULE_PREFIX + name,)]
    assert (tool.module, tool.version) in gomod["require"], f"{name}: go.mod does not require {tool.module} {tool.version}"
    assert {t[0] for t in gomod.get("tool", [])} == set(tool.binaries.values())
    go_sum = (directory / "go.sum").read_text()
    assert f"{tool.module} {tool.version} " in go_sum
    assert f"{tool.module} {tool.version}/go.mod " in go_sum


def test_every_scratch_module_has_a_pin():
    modules = {path.parent.name for path in build.TOOLCHAIN_DIR.glob("*/go.mod")}
    assert modules == set(TOOLS)


def test_kubernetes_staging_modules_are_replaced_by_their_published_tags():
    gomod = parse_gomod((build.module_dir("kubernetes") / "go.mod").read_text())
    staging_version = "v0" + KUBERNETES_VERSION[2:]
    replaced = {old: (new, version) for old, new, version in gomod["replace"]}
    assert {"k8s.io/api", "k8s.io/apimachinery", "k8s.io/apiserver", "k8s.io/client-go",
            "k8s.io/component-base", "k8s.io/kubectl"} <= set(replaced)
    assert all(new == old and version == staging_version for old, (new, version) in replaced.items())
    # A required staging module sits at k8s.io/kubernetes's placeholder v0.0.0 or at the tag;
    # either way the version-less replace above decides what is built.
    required = dict(gomod["require"])
    assert {required[m] for m in replaced if m in required} <= {"v0.0.0", staging_version}


def test_kubernetes_replacements_match_upstream_when_its_gomod_is_cached():
    """Exact comparison with k8s.io/kubernetes's own go.mod, read from the Go module cache.

    The cache is filled by any build; without it the structural test above still holds.
    """
    gomodcache = Path(os.environ.get("GOMODCACHE") or Path(os.environ.get("GOPATH") or Path.home() / "go") / "pkg" / "mod")
    upstream = gomodcache / "cache" / "download" / "k8s.io" / "kubernetes" / "@v" / f"{KUBERNETES_VERSION}.mod"
    if not upstream.exists():
        pytest.skip(f"{upstream} not downloaded yet (no build has run on this machine)")
    expected = build.staging_replacements(upstream.read_text(), KUBERNETES_VERSION)
    gomod = parse_gomod((build.module_dir("kubernetes") / "go.mod").read_text())
    assert {old: version for old, _, version in gomod["replace"]} == expected


def test_godebug_line_is_copied_from_upstream():
    gomod = (build.module_dir("kubernetes") / "go.mod").read_text()
    assert re.search(r"^godebug default=go1\.\d+$", gomod, re.MULTILINE)


def test_render_gomod_header_generates_replace_lines_from_upstream():
    upstream = (
        "module k8s.io/kubernetes\n\ngo 1.26.0\n\ngodebug default=go1.26\n\n"
        "replace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/kubectl => ./staging/src/k8s.io/kubectl\n)\n"
    )
    header = build.render_gomod_header("kubernetes", TOOLS["kubernetes"], upstream)
    assert "go 1.26.0\ngodebug default=go1.26\n" in header
    assert f"\tk8s.io/api => k8s.io/api v0{KUBERNETES_VERSION[2:]}\n" in header
    assert f"\tk8s.io/kubectl => k8s.io/kubectl v0{KUBERNETES_VERSION[2:]}\n" in header


@pytest.mark.parametrize(
    ("package", "binary"),
    [
        ("go.etcd.io/etcd/server/v3", "server"),
        ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
        ("helm.sh/helm/v3/cmd/helm", "helm"),
        ("example.com/v2tool", "v2tool"),
    ],
)
def test_go_output_name_drops_a_major_version_suffix(package, binary):
    assert build.go_output_name(package) == binary


def test_bin_dir_honours_the_override(monkeypatch, tmp_path):
    monkeypatch.setenv("KONTAINERS_BIN_DIR", str(tmp_path))
    assert build.bin_dir() == tmp_path
