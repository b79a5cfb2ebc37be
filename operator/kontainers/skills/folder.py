"""A bundle made of the files of one folder, sent one by one (the Skills API's directory upload).

Each file arrives with its path inside the folder (`my-skill/SKILL.md`, `my-skill/scripts/x.py`)
and is deflated into a zip as it streams in, so the result is the very bundle a client would
have zipped itself, and goes through the same `bundle.validate`. Names and sizes are checked as
the files arrive, so an oversized upload is cut short instead of spooled whole.
"""

from __future__ import annotations

import contextlib
import zipfile
from typing import BinaryIO

from kontainers.skills.bundle import DEFAULT_LIMITS, Limits, SkillBundleError, _check_name


class FolderZip:
    """Writes the files of a directory upload into a zip on `out` (a seekable binary file)."""

    def __init__(self, out: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._zip = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED)
        self._seen: set[str] = set()
        self._entry: BinaryIO | None = None
        self._entry_name = ""
        self._entry_bytes = 0
        self.total_bytes = 0

    def start(self, path: str) -> None:
        """Begin the file at `path` (relative, inside the one top-level folder)."""
        self.finish_entry()
        name = str(_check_name(path))
        if name in self._seen:
            raise SkillBundleError(f"skill bundle entry {path!r} appears twice")
        self._seen.add(name)
        if len(self._seen) > self.limits.max_files:
            raise SkillBundleError(f"skill bundle holds more than {self.limits.max_files} files")
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        self._entry = self._zip.open(info, "w")
        self._entry_name, self._entry_bytes = name, 0

    def write(self, chunk: bytes) -> None:
        assert self._entry is not None
        self._entry_bytes += len(chunk)
        self.total_bytes += len(chunk)
        if self._entry_bytes > self.limits.max_file_bytes:
            raise SkillBundleError(f"skill bundle entry {self._entry_name!r} is larger than "
                                   f"{self.limits.max_file_bytes} bytes per file")
        if self.total_bytes > self.limits.max_total_bytes:
            raise SkillBundleError(f"skill bundle inflates to more than {self.limits.max_total_bytes} bytes")
        self._entry.write(chunk)

    def finish_entry(self) -> None:
        if self._entry is not None:
            self._entry.close()
            self._entry = None

    def abandon(self) -> None:
        """Drop a refused upload's zip (its file is the caller's to close)."""
        with contextlib.suppress(Exception):
            self.finish_entry()
        self._entry = None
        with contextlib.suppress(Exception):
            self._zip.close()

    def close(self) -> int:
        """Finish the zip (its central directory); the number of files in it."""
        self.finish_entry()
        self._zip.close()
        return len(self._seen)
