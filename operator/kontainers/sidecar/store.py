"""The files of one container: data under the root, one small JSON record per file beside it.

Layout of the root (the pod's /mnt/data, shared with the sandbox):

    <root>/<path>                      the files themselves, as the sandbox sees them
    <root>/.kontainers/records/<id>    {"id", "path", "bytes", "source", "created_at", "created_ns"}
    <root>/.kontainers/tmp/            uploads in flight (same filesystem, so the rename is atomic)

Records live next to the data so that a restarted sidecar keeps every id. Files the sandbox wrote
itself are found by scanning the root and get a record with source "assistant" the first time they
are seen; from then on their id is as stable as an upload's. A record whose file disappeared is
dropped at the next scan. The file system is touched only from worker threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import stat
import time
from collections import OrderedDict
from collections.abc import AsyncIterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from kontainers.sidecar import paths

log = logging.getLogger(__name__)

FILE_ID_PREFIX = "cfile_"
READ_CHUNK = 1024 * 1024
REMEMBERED_REMOVALS = 1000


def new_file_id() -> str:
    return FILE_ID_PREFIX + secrets.token_hex(16)


def is_file_id(value: str) -> bool:
    hexpart = value[len(FILE_ID_PREFIX) :]
    return value.startswith(FILE_ID_PREFIX) and len(hexpart) == 32 and all(c in "0123456789abcdef" for c in hexpart)


@dataclass
class StoredFile:
    id: str
    path: str  # relative to the root, "/"-separated
    bytes: int
    source: Literal["user", "assistant"]
    created_at: int  # unix seconds, as on the wire
    created_ns: int  # the order of files; ties are broken by id

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))

    def sort_key(self) -> tuple[int, str]:
        return (self.created_ns, self.id)


class FileTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"File is larger than the limit of {limit} bytes.")
        self.limit = limit


class NotAFile(Exception):
    """The name is taken by something that is not a regular file (a directory, a symlinked dir)."""


class SandboxFileStore:
    """All files of the root, by id. Create with `await SandboxFileStore.open(root)`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root_real = ""
        self._root_fd = -1
        self._records_fd = -1
        self._tmp_fd = -1
        self._by_id: dict[str, StoredFile] = {}
        self._by_path: dict[str, StoredFile] = {}
        # Sort keys of recently removed files: a client paging with a since-deleted id as `after`
        # still gets the next page.
        self._removed: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._commit = asyncio.Lock()  # one writer of records and names at a time
        self._scan: asyncio.Task[None] | None = None
        self._live_tmp: set[str] = set()  # temp files of uploads in flight (this is their only writer)

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(cls, root: Path) -> SandboxFileStore:
        store = cls(root)
        await asyncio.to_thread(store._open_sync)
        await store.refresh()
        return store

    def _open_sync(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._root_real = os.path.realpath(self.root)
        self._root_fd = os.open(self._root_real, os.O_RDONLY | os.O_DIRECTORY)
        meta = paths.open_dir(self._root_fd, (paths.META_DIR,), create=True)
        try:
            os.fchmod(meta, 0o700)  # the sandbox has no business in here
            self._records_fd = paths.open_dir(meta, ("records",), create=True)
            self._tmp_fd = paths.open_dir(meta, ("tmp",), create=True)
        finally:
            os.close(meta)
        # Uploads killed mid-way (process killed, pod restarted) left only temp files: drop them.
        for name in os.listdir(self._tmp_fd):
            try:
                os.unlink(name, dir_fd=self._tmp_fd)
            except OSError:
                pass
        for record in self._load_records():
            self._index(record)

    async def sweep_temp(self) -> int:
        """Remove temp files no upload in flight is writing (the start sweeps them all); how many.

        This process is the only writer of its tmp directory, so any entry not in the live set
        is a leftover (an upload whose cleanup failed): removed, never a live upload's.
        """
        live = set(self._live_tmp)
        return await asyncio.to_thread(self._sweep_temp_sync, live)

    def _sweep_temp_sync(self, live: set[str]) -> int:
        removed = 0
        for name in os.listdir(self._tmp_fd):
            if name in live or name in self._live_tmp:  # also one that started meanwhile
                continue
            try:
                os.unlink(name, dir_fd=self._tmp_fd)
                removed += 1
            except OSError:
                pass
        return removed

    def close(self) -> None:
        for fd in (self._tmp_fd, self._records_fd, self._root_fd):
            if fd >= 0:
                os.close(fd)
        self._root_fd = self._records_fd = self._tmp_fd = -1

    def _load_records(self) -> list[StoredFile]:
        by_path: dict[str, StoredFile] = {}
        for name in os.listdir(self._records_fd):
            record = self._read_record(name)
            if record is None:
                self._unlink_quietly(name, self._records_fd)
                continue
            # A crash between writing a new record and renaming the upload into place leaves two
            # records for one path: the newer describes what is (or was about to be) there.
            older = by_path.get(record.path)
            if older is not None:
                loser = min(older, record, key=StoredFile.sort_key)
                self._unlink_quietly(loser.id, self._records_fd)
                record = max(older, record, key=StoredFile.sort_key)
            by_path[record.path] = record
        return list(by_path.values())

    def _read_record(self, name: str) -> StoredFile | None:
        if not is_file_id(name):
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self._records_fd)
            with os.fdopen(fd, "rb") as handle:
                data = json.loads(handle.read(64 * 1024))
            record = StoredFile(
                id=str(data["id"]),
                path=str(data["path"]),
                bytes=int(data["bytes"]),
                source="user" if data["source"] == "user" else "assistant",
                created_at=int(data["created_at"]),
                created_ns=int(data.get("created_ns", int(data["created_at"]) * 10**9)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring an unreadable file record", extra={"record": name})
            return None
        if record.id != name or paths.stored_parts(record.path) is None:
            return None
        return record

    # --- the index -----------------------------------------------------------------------------

    def _index(self, record: StoredFile) -> None:
        self._by_id[record.id] = record
        self._by_path[record.path] = record

    def _unindex(self, record: StoredFile) -> None:
        self._by_id.pop(record.id, None)
        self._removed[record.id] = record.sort_key()
        while len(self._removed) > REMEMBERED_REMOVALS:
            self._removed.popitem(last=False)
        if self._by_path.get(record.path) is record:
            del self._by_path[record.path]

    def removed_key(self, file_id: str) -> tuple[int, str] | None:
        """The sort key a recently removed file had, to page after it."""
        return self._removed.get(file_id)

    def records(self) -> list[StoredFile]:
        """Every known file, oldest first."""
        return sorted(self._by_id.values(), key=StoredFile.sort_key)

    async def refresh(self) -> None:
        """Bring the index in line with the root: new files of the sandbox, files it removed.

        Concurrent callers share one scan.
        """
        if self._scan is None or self._scan.done():
            self._scan = asyncio.ensure_future(self._refresh())
        await asyncio.shield(self._scan)

    async def _refresh(self) -> None:
        async with self._commit:  # an upload committed mid-scan must not look removed
            found = await asyncio.to_thread(self._walk)
            now_ns = time.time_ns()
            new: list[StoredFile] = []
            for path, size in sorted(found.items()):
                record = self._by_path.get(path)
                if record is not None:
                    record.bytes = size  # the sandbox may have changed it
                    continue
                record = StoredFile(new_file_id(), path, size, "assistant", now_ns // 10**9, now_ns)
                self._index(record)
                new.append(record)
            gone = [record for path, record in self._by_path.items() if path not in found]
            for record in gone:
                self._unindex(record)
            await asyncio.to_thread(self._persist_changes, new, gone)
        if new or gone:
            log.info("scanned the root", extra={"new_files": len(new), "removed_files": len(gone)})

    def _persist_changes(self, new: list[StoredFile], gone: list[StoredFile]) -> None:
        # No fsync per discovered file: the sandbox may write thousands at once (a pip install),
        # and a record lost to a machine crash only means a new id at the next scan. The page
        # cache survives a sidecar restart, which is what an emptyDir outlives.
        for record in new:
            self._write_record(record, durable=False)
        for record in gone:
            self._unlink_quietly(record.id, self._records_fd)
        if new or gone:
            os.fsync(self._records_fd)

    def _walk(self) -> dict[str, int]:
        """path → size of every file under the root: regular files, and symlinks to regular files
        inside the root. Each directory is opened from the root without following symlinks, so one
        the sandbox swaps for a symlink after it was seen is skipped, never entered."""
        found: dict[str, int] = {}
        pending: list[tuple[str, ...]] = [()]
        while pending:
            parent = pending.pop()
            try:
                dir_fd = paths.open_dir(self._root_fd, parent)
            except OSError:
                continue  # removed, or no longer a directory
            try:
                entries = list(os.scandir(dir_fd))
            except OSError:
                entries = []
            try:
                for entry in entries:
                    if not parent and entry.name == paths.META_DIR:
                        continue
                    path = "/".join((*parent, entry.name))
                    try:
                        path.encode("utf-8")
                    except UnicodeEncodeError:
                        continue  # not representable in a JSON record
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            pending.append((*parent, entry.name))
                        elif entry.is_file(follow_symlinks=False):
                            found[path] = entry.stat(follow_symlinks=False).st_size
                        elif entry.is_symlink():
                            inside = paths.resolve_inside(self._root_real, tuple(path.split("/")))
                            target = os.path.join(self._root_real, *inside) if inside else None
                            if target and stat.S_ISREG(os.stat(target, follow_symlinks=False).st_mode):
                                found[path] = os.stat(target, follow_symlinks=False).st_size
                    except OSError:
                        continue  # removed while we looked
            finally:
                os.close(dir_fd)
        return found

    # --- reads -----------------------------------------------------------------------------------

    async def get(self, file_id: str) -> StoredFile | None:
        """The record of a file that still exists, its size refreshed; None otherwise (and the
        record of a file that vanished behind the sidecar's back is dropped)."""
        record = self._by_id.get(file_id)
        opened = await self.open_content(file_id)
        if opened is None:
            if record is not None:
                async with self._commit:
                    if self._by_id.get(file_id) is record:
                        self._unindex(record)
                        await asyncio.to_thread(self._unlink_quietly, record.id, self._records_fd)
            return None
        record, fd = opened
        os.close(fd)
        return record

    async def open_content(self, file_id: str) -> tuple[StoredFile, int] | None:
        """The record and a read descriptor (the caller closes it) of a file; None if gone."""
        record = self._by_id.get(file_id)
        if record is None:
            return None
        try:
            fd = await asyncio.to_thread(self._open_content, record)
        except (OSError, NotAFile):
            return None
        record.bytes = os.fstat(fd).st_size
        return record, fd

    def _open_content(self, record: StoredFile) -> int:
        try:
            return paths.open_regular_file(self._root_fd, record.parts)
        except (paths.IsASymlink, NotADirectoryError):
            # A symlink somewhere on the way: serve it only if it ends at a file inside the root.
            inside = paths.resolve_inside(self._root_real, record.parts)
            if inside is None:
                raise NotAFile(record.path) from None
            return paths.open_regular_file(self._root_fd, inside)

    # --- writes ----------------------------------------------------------------------------------

    async def upload(self, name: str, chunks: AsyncIterable[bytes], limit: int) -> StoredFile:
        """Store a new file at `name` from a stream, atomically: until the last byte is on disk
        nothing is visible; an interrupted or oversized upload leaves nothing behind.

        An existing file of that name is replaced and its record dropped (the upload is a new file).
        Raises paths.UnsafeName, FileTooLarge, NotAFile.
        """
        parts = paths.upload_parts(name)
        tmp_name = f"{secrets.token_hex(16)}.part"
        self._live_tmp.add(tmp_name)  # before it exists: a sweep never sees it unclaimed
        fd = await asyncio.to_thread(
            os.open, tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=self._tmp_fd
        )
        committed = False
        try:
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(limit)
                await asyncio.to_thread(_write_all, fd, chunk)
            await asyncio.to_thread(os.fsync, fd)
            await asyncio.to_thread(os.close, fd)
            fd = -1
            async with self._commit:
                now_ns = time.time_ns()
                record = StoredFile(new_file_id(), "/".join(parts), size, "user", now_ns // 10**9, now_ns)
                await asyncio.to_thread(self._commit_upload, tmp_name, record)
                committed = True
                old = self._by_path.get(record.path)
                if old is not None:
                    self._unindex(old)
                    await asyncio.to_thread(self._unlink_quietly, old.id, self._records_fd)
                self._index(record)
            return record
        finally:
            if fd >= 0:
                os.close(fd)
            if not committed:
                await asyncio.to_thread(self._unlink_quietly, tmp_name, self._tmp_fd)
            self._live_tmp.discard(tmp_name)

    def _commit_upload(self, tmp_name: str, record: StoredFile) -> None:
        # The record goes first: a crash before the rename leaves a record without a file (dropped
        # at the next start), never a visible file without its record.
        try:
            parent = paths.open_dir(self._root_fd, record.parts[:-1], create=True)
        except (NotADirectoryError, FileExistsError):
            raise NotAFile(record.path) from None
        try:
            self._write_record(record)
            try:
                os.replace(tmp_name, record.parts[-1], src_dir_fd=self._tmp_fd, dst_dir_fd=parent)
            except (IsADirectoryError, NotADirectoryError, PermissionError):
                self._unlink_quietly(record.id, self._records_fd)
                raise NotAFile(record.path) from None
            os.fsync(parent)
        finally:
            os.close(parent)

    async def delete(self, file_id: str) -> bool:
        """Remove a file and its record; False if there is no such file."""
        async with self._commit:
            record = self._by_id.get(file_id)
            if record is None:
                return False
            self._unindex(record)
            await asyncio.to_thread(self._delete_sync, record)
        return True

    def _delete_sync(self, record: StoredFile) -> None:
        try:
            parent = paths.open_dir(self._root_fd, record.parts[:-1])
        except OSError:
            parent = -1  # its directory is gone (or became a symlink): nothing of ours to remove
        if parent >= 0:
            try:
                os.unlink(record.parts[-1], dir_fd=parent)  # a symlink itself, never its target
            except (FileNotFoundError, IsADirectoryError):
                pass
            finally:
                os.close(parent)
        self._unlink_quietly(record.id, self._records_fd)

    def _write_record(self, record: StoredFile, *, durable: bool = True) -> None:
        tmp = f"{record.id}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=self._records_fd)
        try:
            _write_all(fd, json.dumps(asdict(record)).encode())
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, record.id, src_dir_fd=self._records_fd, dst_dir_fd=self._records_fd)
        if durable:
            os.fsync(self._records_fd)

    @staticmethod
    def _unlink_quietly(name: str, dir_fd: int) -> None:
        try:
            os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
