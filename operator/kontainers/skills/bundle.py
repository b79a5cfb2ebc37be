"""Validate and unpack skill bundles: a zip with exactly one top-level folder holding SKILL.md.

Everything is checked from the zip's central directory before a single byte is written: size
limits, entry count, names (no absolute paths, `..`, backslashes, control characters), entry
types (no symlinks, devices or fifos), encryption, duplicates. Unpacking then writes into a
hidden temp directory next to the destination and renames it into place, so a bundle that fails
even while inflating (a lying size header, a bad CRC) leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

SKILL_FILE = "SKILL.md"
MAX_NAME_BYTES = 255  # one path element
MAX_PATH_BYTES = 1024


@dataclass(frozen=True)
class Limits:
    max_compressed_bytes: int = 50 * 1024 * 1024
    max_files: int = 500
    max_file_bytes: int = 25 * 1024 * 1024
    max_total_bytes: int = 250 * 1024 * 1024  # all files inflated: refuses zip bombs of many small files


DEFAULT_LIMITS = Limits()


class SkillBundleError(ValueError):
    """A bundle refused; the message says why, in words fit for an API error."""


@dataclass(frozen=True)
class SkillBundle:
    """A validated bundle: its top-level folder and its regular files (paths inside the zip)."""

    folder: str
    files: tuple[zipfile.ZipInfo, ...]
    total_bytes: int


def _check_name(name: str) -> PurePosixPath:
    if not name or "\\" in name or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise SkillBundleError(f"skill bundle entry {name!r} has an invalid name")
    if len(name.encode()) > MAX_PATH_BYTES:
        raise SkillBundleError(f"skill bundle entry {name[:64]!r}… has a name that is too long")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise SkillBundleError(f"skill bundle entry {name!r} is an absolute path")
    if any(part in {"..", "."} for part in path.parts) or ":" in path.parts[0]:
        raise SkillBundleError(f"skill bundle entry {name!r} escapes the bundle")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in path.parts):
        raise SkillBundleError(f"skill bundle entry {name[:64]!r} has a path element that is too long")
    return path


def _entry_type(info: zipfile.ZipInfo) -> int:
    # Unix mode bits live in the high 16 bits of external_attr when made on Unix (create_system 3).
    return stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0


def decode_inline(data: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The zip of an inline skill's `source.data` (base64), size-checked before decoding."""
    if len(data) * 3 // 4 > limits.max_compressed_bytes + 3:
        raise SkillBundleError(f"skill bundle is larger than {limits.max_compressed_bytes} bytes compressed")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SkillBundleError("skill bundle data is not valid base64") from None


# The zip in memory, a file holding it (the sidecar spools uploads to disk), or an open seekable
# binary file (the gateway spools Skills API uploads).
Source = bytes | Path | BinaryIO


def _size(source: Source) -> int:
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, Path):
        return source.stat().st_size
    return source.seek(0, io.SEEK_END)


def _open(source: Source) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)


def validate(data: Source, limits: Limits = DEFAULT_LIMITS) -> SkillBundle:
    """Check a bundle completely from its central directory; raise SkillBundleError when refused."""
    size = _size(data)
    if size > limits.max_compressed_bytes:
        raise SkillBundleError(
            f"skill bundle is {size} bytes; the limit is {limits.max_compressed_bytes} bytes compressed"
        )
    try:
        archive = _open(data)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise SkillBundleError(f"skill bundle is not a valid zip archive ({exc})") from None
    with archive:
        entries = archive.infolist()
        files: list[zipfile.ZipInfo] = []
        seen: set[str] = set()
        tops: set[str] = set()
        total = 0
        for info in entries:
            path = _check_name(info.filename)
            normal = str(path)
            if normal in seen:
                raise SkillBundleError(f"skill bundle entry {info.filename!r} appears twice")
            seen.add(normal)
            tops.add(path.parts[0])
            kind = _entry_type(info)
            if kind == stat.S_IFLNK:
                raise SkillBundleError(f"skill bundle entry {info.filename!r} is a symbolic link")
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise SkillBundleError(f"skill bundle entry {info.filename!r} is not a regular file")
            if info.flag_bits & 0x1:
                raise SkillBundleError(f"skill bundle entry {info.filename!r} is encrypted")
            if info.is_dir():
                continue
            if len(path.parts) < 2:
                raise SkillBundleError(
                    f"skill bundle must hold one top-level folder; {info.filename!r} is outside it"
                )
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise SkillBundleError(f"skill bundle entry {info.filename!r} uses an unsupported compression")
            if info.file_size > limits.max_file_bytes:
                raise SkillBundleError(
                    f"skill bundle entry {info.filename!r} is {info.file_size} bytes; "
                    f"the limit is {limits.max_file_bytes} bytes per file"
                )
            files.append(info)
            if len(files) > limits.max_files:
                raise SkillBundleError(f"skill bundle holds more than {limits.max_files} files")
            total += info.file_size
            if total > limits.max_total_bytes:
                raise SkillBundleError(f"skill bundle inflates to more than {limits.max_total_bytes} bytes")
        file_paths = {info.filename.rstrip("/") for info in files}
        for info in files:
            for parent in PurePosixPath(info.filename).parents:
                if str(parent) in file_paths:
                    raise SkillBundleError(f"skill bundle entry {info.filename!r} lies under a file")
        if len(tops) != 1:
            found = ", ".join(sorted(tops)[:5]) or "none"
            raise SkillBundleError(f"skill bundle must hold exactly one top-level folder (found: {found})")
        folder = tops.pop()
        if f"{folder}/{SKILL_FILE}" not in seen:
            raise SkillBundleError(f"skill bundle has no {SKILL_FILE} in its top-level folder {folder!r}")
        if folder.startswith("."):
            raise SkillBundleError(f"skill bundle folder {folder!r} must not be hidden")
    return SkillBundle(folder=folder, files=tuple(files), total_bytes=total)


def unpack(data: Source, skills_dir: Path, limits: Limits = DEFAULT_LIMITS) -> Path:
    """Validate, then unpack into `skills_dir/<folder>` (replacing an older copy); return that path.

    Nothing is written when the bundle is refused.
    """
    bundle = validate(data, limits)
    skills_dir.mkdir(parents=True, exist_ok=True)
    # Staged in the destination's filesystem, so the final rename is atomic.
    staging = Path(tempfile.mkdtemp(dir=skills_dir, prefix=".unpack-"))
    try:
        with _open(data) as archive:
            for info in bundle.files:
                _extract(archive, info, staging, limits)
        target = skills_dir / bundle.folder
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging / bundle.folder, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract(archive: zipfile.ZipFile, info: zipfile.ZipInfo, staging: Path, limits: Limits) -> None:
    destination = staging.joinpath(*PurePosixPath(info.filename).parts)
    destination.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    executable = bool((info.external_attr >> 16) & 0o111) if info.create_system == 3 else False
    # O_EXCL|O_NOFOLLOW: never write through anything that already sits at that name.
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755 if executable else 0o644)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, archive.open(info) as source:
            while block := source.read(1024 * 1024):
                written += len(block)
                if written > min(info.file_size, limits.max_file_bytes):
                    raise SkillBundleError(f"skill bundle entry {info.filename!r} inflates past its declared size")
                out.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise SkillBundleError(f"skill bundle entry {info.filename!r} is corrupt ({exc})") from None
