"""Skill bundles: good ones unpack exactly; malicious or oversized ones are refused with nothing written."""

from __future__ import annotations

import base64
import io
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from kontainers.skills.bundle import Limits, SkillBundleError, decode_inline, unpack, validate


def make_zip(entries: dict[str, bytes], *, modes: dict[str, int] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = ((modes or {}).get(name, stat.S_IFREG | 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


GOOD = {
    "pdf-tools/SKILL.md": b"---\nname: pdf-tools\ndescription: PDFs\n---\nUse run.sh.\n",
    "pdf-tools/scripts/run.sh": b"#!/bin/sh\necho hi\n",
    "pdf-tools/data/table.csv": b"a,b\n1,2\n",
}


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_good_bundle_unpacks_byte_identical(tmp_path: Path) -> None:
    data = make_zip(GOOD, modes={"pdf-tools/scripts/run.sh": stat.S_IFREG | 0o755})
    target = unpack(data, tmp_path / "skills")
    assert target == tmp_path / "skills" / "pdf-tools"
    assert snapshot(tmp_path / "skills") == GOOD
    assert (target / "scripts" / "run.sh").stat().st_mode & 0o111
    assert not (target / "SKILL.md").stat().st_mode & 0o111
    assert [p.name for p in (tmp_path / "skills").iterdir()] == ["pdf-tools"]  # no staging left


def test_a_new_version_replaces_the_old(tmp_path: Path) -> None:
    unpack(make_zip(GOOD), tmp_path)
    unpack(make_zip({"pdf-tools/SKILL.md": b"v2"}), tmp_path)
    assert snapshot(tmp_path) == {"pdf-tools/SKILL.md": b"v2"}


def test_decode_inline(tmp_path: Path) -> None:
    data = make_zip(GOOD)
    assert decode_inline(base64.b64encode(data).decode()) == data
    with pytest.raises(SkillBundleError, match="base64"):
        decode_inline("not base64 !!")
    with pytest.raises(SkillBundleError, match="larger"):
        decode_inline("A" * 100, Limits(max_compressed_bytes=10))


def lying_size(data: bytes, name: str, declared: int) -> bytes:
    """Rewrite the uncompressed size of `name` in both headers: a zip bomb's trick."""
    raw = bytearray(data)
    encoded = name.encode()
    at = raw.find(b"PK\x03\x04")
    while at != -1:
        if raw[at + 30 : at + 30 + len(encoded)] == encoded:
            struct.pack_into("<I", raw, at + 22, declared)
        at = raw.find(b"PK\x03\x04", at + 4)
    at = raw.find(b"PK\x01\x02")
    while at != -1:
        if raw[at + 46 : at + 46 + len(encoded)] == encoded:
            struct.pack_into("<I", raw, at + 24, declared)
        at = raw.find(b"PK\x01\x02", at + 4)
    return bytes(raw)


def with_flag(data: bytes, flag: int) -> bytes:
    raw = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        while at != -1:
            struct.pack_into("<H", raw, at + offset, struct.unpack_from("<H", raw, at + offset)[0] | flag)
            at = raw.find(signature, at + 4)
    return bytes(raw)


SMALL = Limits(max_compressed_bytes=64 * 1024, max_files=3, max_file_bytes=1000, max_total_bytes=2500)

REFUSED = {
    "zip slip": (make_zip({**GOOD, "pdf-tools/../../escape.txt": b"x"}), "escapes"),
    "dot-dot at the top": (make_zip({"../pdf-tools/SKILL.md": b"x"}), "escapes"),
    "absolute path": (make_zip({"/etc/cron.d/evil": b"x", **GOOD}), "absolute"),
    "backslashes": (make_zip({**GOOD, "pdf-tools\\..\\..\\evil": b"x"}), "invalid name"),
    "control character": (make_zip({**GOOD, "pdf-tools/a\nb": b"x"}), "invalid name"),
    "symlink": (make_zip({**GOOD, "pdf-tools/link": b"/etc/passwd"},
                         modes={"pdf-tools/link": stat.S_IFLNK | 0o777}), "symbolic link"),
    "fifo": (make_zip({**GOOD, "pdf-tools/pipe": b""}, modes={"pdf-tools/pipe": stat.S_IFIFO | 0o644}),
             "not a regular file"),
    "two top-level folders": (make_zip({**GOOD, "other/SKILL.md": b"x"}), "exactly one top-level folder"),
    "a file at the top": (make_zip({**GOOD, "README.md": b"x"}), "outside it"),
    "no SKILL.md": (make_zip({"pdf-tools/README.md": b"x"}), "no SKILL.md"),
    "SKILL.md too deep": (make_zip({"pdf-tools/sub/SKILL.md": b"x"}), "no SKILL.md"),
    "hidden folder": (make_zip({".hidden/SKILL.md": b"x"}), "hidden"),
    "duplicate names": (make_zip({**GOOD, "pdf-tools/./SKILL.md": b"again"}), "twice"),
    "a file under a file": (make_zip({**GOOD, "pdf-tools/SKILL.md/x": b"x"}), "under a file"),
    "not a zip": (b"PK\x03\x04 definitely not a zip", "not a valid zip"),
    "encrypted": (with_flag(make_zip(GOOD), 0x1), "encrypted"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_malicious_bundles_are_refused_with_nothing_written(tmp_path: Path, case: str) -> None:
    data, reason = REFUSED[case]
    skills = tmp_path / "skills"
    unpack(make_zip({"kept/SKILL.md": b"untouched"}), skills)
    before = snapshot(skills)
    with pytest.raises(SkillBundleError, match=reason):
        unpack(data, skills)
    assert snapshot(skills) == before
    assert sorted(p.name for p in skills.iterdir()) == ["kept"]


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ({"s/SKILL.md": b"x", "s/a": b"", "s/b": b"", "s/c": b""}, "more than 3 files"),
        ({"s/SKILL.md": b"x" * 1001}, "per file"),
        ({"s/SKILL.md": b"x" * 900, "s/a": b"y" * 900, "s/b": b"z" * 900}, "inflates to more than"),
    ],
)
def test_limits(tmp_path: Path, entries: dict[str, bytes], reason: str) -> None:
    with pytest.raises(SkillBundleError, match=reason):
        unpack(make_zip(entries), tmp_path, SMALL)
    assert list(tmp_path.iterdir()) == []


def test_compressed_size_limit(tmp_path: Path) -> None:
    data = make_zip({"s/SKILL.md": bytes(range(256)) * 400})  # incompressible enough
    with pytest.raises(SkillBundleError, match="compressed"):
        validate(data, Limits(max_compressed_bytes=len(data) - 1))


def test_default_limits_match_the_documented_ones() -> None:
    limits = Limits()
    assert (limits.max_compressed_bytes, limits.max_files, limits.max_file_bytes) == (
        50 * 1024 * 1024, 500, 25 * 1024 * 1024)


def test_a_size_header_that_lies_is_caught_while_inflating(tmp_path: Path) -> None:
    """Declared 10 bytes, inflates to 100 000: refused mid-way, staging removed, nothing visible."""
    data = lying_size(make_zip({"s/SKILL.md": b"ok", "s/bomb": b"\0" * 100_000}), "s/bomb", 10)
    validate(data)  # the central directory alone looks harmless
    with pytest.raises(SkillBundleError, match="s/bomb"):
        unpack(data, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_bundle_spooled_to_a_file_works_the_same(tmp_path: Path) -> None:
    spooled = tmp_path / "bundle.zip"
    spooled.write_bytes(make_zip(GOOD))
    assert unpack(spooled, tmp_path / "skills").name == "pdf-tools"
    assert snapshot(tmp_path / "skills") == GOOD
    spooled.write_bytes(REFUSED["symlink"][0])
    with pytest.raises(SkillBundleError, match="symbolic link"):
        unpack(spooled, tmp_path / "other")
    assert not (tmp_path / "other").exists() or list((tmp_path / "other").iterdir()) == []
