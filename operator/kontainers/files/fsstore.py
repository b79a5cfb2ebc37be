"""The filesystem backend: one directory per tenant, `<id>` holding the bytes, `<id>.json` the record.

An upload streams into a hidden temp file in the same directory, is fsynced and renamed; the
record is written the same way afterwards and is what makes the file exist, so a crash at any
point leaves no visible half file, only a hidden temp file.

Temp files of dead writers (a gateway killed mid-upload) are removed at start and by a sweep
every `sweep_seconds`; a live upload's never is. Replicas may share the volume, so "live" cannot
be a local list: every writer touches its temp files (mtime) at each sweep, and a temp file
untouched for `stale_temp_seconds` — several sweeps — has no writer left.
Blocking file calls run in a worker thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from kontainers.files.store import (
    READ_CHUNK,
    FileNotFound,
    TenantFile,
    TenantFileStore,
    check_tenant,
    coalesced,
    is_tenant,
    is_valid_id,
    limited,
    with_bytes,
)

log = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-"
RECORD_SUFFIX = ".json"
WRITE_BLOCK = 1024 * 1024  # one thread hop per MiB, not per network chunk
SWEEP_SECONDS = 60.0  # how often live temp files are touched and dead ones removed
STALE_TEMP_SECONDS = 300.0  # untouched this long (5 sweeps): its writer is gone


class FilesystemStore(TenantFileStore):
    def __init__(self, root: Path | str, *, sweep_seconds: float = SWEEP_SECONDS,
                 stale_temp_seconds: float = STALE_TEMP_SECONDS) -> None:
        super().__init__()
        self.root = Path(root)
        self.sweep_seconds = sweep_seconds
        self.stale_temp_seconds = stale_temp_seconds
        self._live_temps: set[Path] = set()  # temp files this process is writing
        self._sweeper: asyncio.Task | None = None

    def _dir(self, tenant: str) -> Path:
        return self.root / check_tenant(tenant)

    def _paths(self, tenant: str, file_id: str) -> tuple[Path, Path]:
        if not is_valid_id(file_id):
            raise FileNotFound(file_id)
        directory = self._dir(tenant)
        return directory / file_id, directory / (file_id + RECORD_SUFFIX)

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        await self.sweep()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="file store temp sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except Exception:  # a full or flaky volume must not stop the next sweeps
                log.exception("sweeping the file store's temp files failed")

    async def sweep(self) -> int:
        """Touch this process's temp files, remove stale ones (any writer's); how many went."""
        return await asyncio.to_thread(self._sweep, set(self._live_temps))

    def _sweep(self, live: set[Path]) -> int:
        for path in live:
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)
        cutoff = time.time() - self.stale_temp_seconds
        removed = 0
        for tenant_dir in self.root.iterdir():
            if not tenant_dir.is_dir() or tenant_dir.is_symlink():
                continue
            for entry in tenant_dir.iterdir():
                if not entry.name.startswith(TEMP_PREFIX) or entry in live:
                    continue
                try:
                    if entry.lstat().st_mtime < cutoff:
                        entry.unlink()
                        removed += 1
                except FileNotFoundError:  # renamed into place or removed meanwhile
                    pass
        if removed:
            log.info("removed %d temp file(s) left by dead writers", removed)
        return removed

    async def put(self, record: TenantFile, chunks: AsyncIterable[bytes], *, max_bytes: int) -> TenantFile:
        data_path, record_path = self._paths(record.tenant, record.id)
        directory = data_path.parent
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        temp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        handle = await asyncio.to_thread(open, temp, "xb")
        self._live_temps.add(temp)
        size = 0
        try:
            try:
                async for block in coalesced(limited(chunks, max_bytes), WRITE_BLOCK):
                    await asyncio.to_thread(handle.write, block)
                    size += len(block)
                await asyncio.to_thread(flush_and_sync, handle)
            finally:
                await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, temp, data_path)
            stored = with_bytes(record, size)
            await asyncio.to_thread(write_atomically, record_path, json.dumps(stored.to_json()).encode())
            return stored
        except BaseException:
            await asyncio.to_thread(unlink_quietly, temp)
            if not record_path.exists():
                await asyncio.to_thread(unlink_quietly, data_path)
            raise
        finally:
            self._live_temps.discard(temp)

    async def stat(self, tenant: str, file_id: str) -> TenantFile:
        _, record_path = self._paths(tenant, file_id)
        try:
            raw = await asyncio.to_thread(record_path.read_bytes)
        except FileNotFoundError:
            raise FileNotFound(file_id) from None
        return TenantFile.from_json(tenant, json.loads(raw))

    async def read(self, tenant: str, file_id: str) -> AsyncIterator[bytes]:
        data_path, record_path = self._paths(tenant, file_id)
        if not await asyncio.to_thread(record_path.exists):
            raise FileNotFound(file_id)
        try:
            handle = await asyncio.to_thread(open, data_path, "rb")
        except FileNotFoundError:
            raise FileNotFound(file_id) from None
        try:
            while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def delete(self, tenant: str, file_id: str) -> bool:
        data_path, record_path = self._paths(tenant, file_id)
        self._forget(tenant, file_id)
        # The record goes first: it is what makes the file exist.
        existed = await asyncio.to_thread(unlink_quietly, record_path)
        await asyncio.to_thread(unlink_quietly, data_path)
        return existed

    async def rewrite_record(self, record: TenantFile) -> None:
        _, record_path = self._paths(record.tenant, record.id)
        self._forget(record.tenant, record.id)
        await asyncio.to_thread(write_atomically, record_path, json.dumps(record.to_json()).encode())

    async def ids(self, tenant: str) -> list[str]:
        return await asyncio.to_thread(self._ids, tenant)

    async def tenants(self) -> list[str]:
        return await asyncio.to_thread(self._tenants)

    def _tenants(self) -> list[str]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return sorted(e.name for e in entries if is_tenant(e.name) and e.is_dir(follow_symlinks=False))

    def _ids(self, tenant: str) -> list[str]:
        try:
            names = os.listdir(self._dir(tenant))
        except FileNotFoundError:
            return []
        return sorted(
            name[: -len(RECORD_SUFFIX)]
            for name in names
            if name.endswith(RECORD_SUFFIX) and not name.startswith(".")
        )


def flush_and_sync(handle) -> None:  # type: ignore[no-untyped-def]
    handle.flush()
    os.fsync(handle.fileno())


def write_atomically(path: Path, data: bytes) -> None:
    temp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    try:
        with open(temp, "xb") as handle:
            handle.write(data)
            flush_and_sync(handle)
        os.replace(temp, path)
    except BaseException:
        unlink_quietly(temp)
        raise


def unlink_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
