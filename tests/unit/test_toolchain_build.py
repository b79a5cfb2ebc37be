"""The binary cache: one dir per pin-hash, reusing identical per-tool builds across dirs."""

from __future__ import annotations

import pytest

from kontainers.cluster import build
from kontainers.cluster.pins import TOOLS


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("KONTAINERS_BIN_DIR", raising=False)
    monkeypatch.setattr(build, "go_version", lambda: "go1.26.8")
    return tmp_path / "kontainers" / "bin"


def test_tool_hash_changes_with_the_go_version(cache, monkeypatch):
    before = build.tool_hash("etcd")
    monkeypatch.setattr(build, "go_version", lambda: "go1.27.0")
    assert build.tool_hash("etcd") != before


def test_a_new_pin_dir_reuses_an_identical_build_of_another_dir(cache):
    old = cache / "old"
    old.mkdir(parents=True)
    (old / "etcd").write_bytes(b"etcd binary")
    build._record_built(old, "etcd", build.tool_hash("etcd"))

    new = build.bin_dir()
    assert build.reuse_identical_build("etcd", ["etcd"], new, build.tool_hash("etcd")) == old
    assert (new / "etcd").read_bytes() == b"etcd binary"
    assert (new / ".tools" / "etcd").read_text() == build.tool_hash("etcd")


def test_a_build_from_other_pins_is_not_reused(cache):
    old = cache / "old"
    old.mkdir(parents=True)
    (old / "etcd").write_bytes(b"etcd built from another version")
    build._record_built(old, "etcd", "0" * 64)
    assert build.reuse_identical_build("etcd", ["etcd"], cache / "new", build.tool_hash("etcd")) is None
    assert not (cache / "new" / "etcd").exists()


def test_nothing_is_built_when_every_binary_is_present(cache, monkeypatch):
    target = build.bin_dir()
    target.mkdir(parents=True)
    for tool in TOOLS.values():
        for binary in tool.binaries:
            (target / binary).write_bytes(b"")
    monkeypatch.setattr(build, "build_tool", lambda *a: pytest.fail("nothing should be built"))
    assert build.ensure_built() == target
    # The dir is named by the current pins, so every tool is recorded for later reuse.
    assert {p.name for p in (target / ".tools").iterdir()} == set(TOOLS)
