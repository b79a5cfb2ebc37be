"""The filesystem backend: one directory per tenant, `<id>` holding the bytes, `<id>.json` the record.

An upload streams into a hidden temp file in the same directory, is fsynced and renamed; the
record is written the same way afterwards and is what makes the file exist, so a crash at any
point leaves no visible half file (only hidden temp files, removed at start once stale).
Blocking file calls run in a worker thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import json
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
    is_valid_id,
    limited,
    with_bytes,
)

TEMP_PREFIX = ".tmp-"
RECORD_SUFFIX = ".json"
WRITE_BLOCK = 1024 * 1024  # one thread hop per MiB, not per network chunk
STALE_TEMP_SECONDS = 24 * 3600  # other replicas may share the volume: only old temp files are ours to drop


class FilesystemStore(TenantFileStore):
    def __init__(self, root: Path | str) -> None:
        super().__init__()
        self.root = Path(root)

    def _dir(self, tenant: str) -> Path:
        return self.root / check_tenant(tenant)

    def _paths(self, tenant: str, file_id: str) -> tuple[Path, Path]:
        if not is_valid_id(file_id):
            raise FileNotFound(file_id)
        directory = self._dir(tenant)
        return directory / file_id, directory / (file_id + RECORD_SUFFIX)

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - STALE_TEMP_SECONDS
        for tenant_dir in self.root.iterdir():
            if not tenant_dir.is_dir():
                continue
            for entry in tenant_dir.iterdir():
                if entry.name.startswith(TEMP_PREFIX) and entry.stat().st_mtime < cutoff:
                    entry.unlink(missing_ok=True)

    async def put(self, record: TenantFile, chunks: AsyncIterable[bytes], *, max_bytes: int) -> TenantFile:
        data_path, record_path = self._paths(record.tenant, record.id)
        directory = data_path.parent
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        temp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        handle = await asyncio.to_thread(open, temp, "xb")
        size = 0
        try:
            try:
                async for block in coalesced(limited(chunks, max_bytes), WRITE_BLOCK):
                    await asyncio.to_thread(handle.write, block)
                    size += len(block)
                await asyncio.to_thread(_flush_and_sync, handle)
            finally:
                await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, temp, data_path)
            stored = with_bytes(record, size)
            await asyncio.to_thread(_write_atomically, record_path, json.dumps(stored.to_json()).encode())
            return stored
        except BaseException:
            await asyncio.to_thread(_unlink_quietly, temp)
            if not record_path.exists():
                await asyncio.to_thread(_unlink_quietly, data_path)
            raise

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
        existed = await asyncio.to_thread(_unlink_quietly, record_path)
        await asyncio.to_thread(_unlink_quietly, data_path)
        return existed

    async def rewrite_record(self, record: TenantFile) -> None:
        _, record_path = self._paths(record.tenant, record.id)
        self._forget(record.tenant, record.id)
        await asyncio.to_thread(_write_atomically, record_path, json.dumps(record.to_json()).encode())

    async def ids(self, tenant: str) -> list[str]:
        return await asyncio.to_thread(self._ids, tenant)

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


def _flush_and_sync(handle) -> None:  # type: ignore[no-untyped-def]
    handle.flush()
    os.fsync(handle.fileno())


def _write_atomically(path: Path, data: bytes) -> None:
    temp = path.parent / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
    try:
        with open(temp, "xb") as handle:
            handle.write(data)
            _flush_and_sync(handle)
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise


def _unlink_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
