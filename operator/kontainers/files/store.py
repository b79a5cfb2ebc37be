"""The file store: one small async interface, two backends (a directory, an S3-compatible bucket).

A stored file is its bytes plus an immutable `TenantFile`, both under (tenant, id). A file becomes
visible atomically once all its bytes are stored, so a failed or oversized upload leaves nothing.
Ids sort by creation time, which lets listings page in `created_at` order from names alone.
"""

from __future__ import annotations

import abc
import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kontainers.settings import FilesSettings

FILE_ID_PREFIX = "file-"
# file- + 13 hex of microseconds since the epoch (sortable until the year 2255) + 16 random hex.
_ID_RE = re.compile(r"^[a-z]+-[0-9a-f]{13}[0-9a-f]{16}$")
# Tenants are namespaces (DNS-1123 labels): safe as a path element and an S3 key element.
_TENANT_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
READ_CHUNK = 256 * 1024


class StoreError(Exception):
    """Base of the store's failures."""


class FileNotFound(StoreError):
    def __init__(self, file_id: str) -> None:
        super().__init__(f"No such File object: {file_id}")
        self.file_id = file_id


class TenantFileTooLarge(StoreError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"File is larger than the limit of {limit} bytes.")
        self.limit = limit


def new_file_id(prefix: str = FILE_ID_PREFIX) -> str:
    """A fresh id whose lexical order is its creation order (to the microsecond)."""
    return f"{prefix}{time.time_ns() // 1000:013x}{secrets.token_hex(8)}"


def is_valid_id(file_id: str) -> bool:
    return bool(_ID_RE.match(file_id))


def is_tenant(name: str) -> bool:
    """A tenant's name (never the hidden `.uploads`, `.skills` beside the tenants)."""
    return bool(_TENANT_RE.match(name))


def check_tenant(tenant: str) -> str:
    if not _TENANT_RE.match(tenant):
        raise ValueError(f"invalid tenant {tenant!r}")
    return tenant


@dataclass(frozen=True)
class TenantFile:
    """What the store keeps about one file besides its bytes. Immutable once stored."""

    id: str
    tenant: str
    filename: str
    purpose: str
    created_at: int
    bytes: int = 0
    expires_at: int | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (time.time() if now is None else now)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "filename": self.filename,
            "purpose": self.purpose,
            "created_at": self.created_at,
            "bytes": self.bytes,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, tenant: str, data: dict[str, object]) -> "TenantFile":
        expires_at = data.get("expires_at")
        return cls(
            id=str(data["id"]),
            tenant=tenant,
            filename=str(data["filename"]),
            purpose=str(data["purpose"]),
            created_at=int(data["created_at"]),  # type: ignore[arg-type]
            bytes=int(data["bytes"]),  # type: ignore[arg-type]
            expires_at=None if expires_at is None else int(expires_at),  # type: ignore[arg-type]
        )


async def limited(chunks: AsyncIterable[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """Pass chunks through, raising TenantFileTooLarge as soon as their total passes `max_bytes`."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise TenantFileTooLarge(max_bytes)
        yield chunk


async def coalesced(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup chunks into blocks of at least `size` bytes (the last may be shorter)."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) >= size:
            yield bytes(buffer)  # one copy per block; callers may keep it while the next fills
            buffer = bytearray()
    if buffer:
        yield bytes(buffer)


class TenantFileStore(abc.ABC):
    """Where the Files API keeps bytes and records. Backends implement the abstract methods."""

    # Records never change once written, so a listing may reuse them; ids of deleted files
    # disappear from `ids()` and so from listings, whatever stays in this cache.
    _cache_size = 50_000

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], TenantFile] = {}

    @abc.abstractmethod
    async def put(self, record: TenantFile, chunks: AsyncIterable[bytes], *, max_bytes: int) -> TenantFile:
        """Store the bytes and the record; return the record with `bytes` set.

        Raises TenantFileTooLarge past `max_bytes`; on any failure nothing becomes visible.
        """

    @abc.abstractmethod
    async def stat(self, tenant: str, file_id: str) -> TenantFile:
        """The record of a stored file, or FileNotFound."""

    @abc.abstractmethod
    def read(self, tenant: str, file_id: str) -> AsyncIterator[bytes]:
        """The bytes, chunk by chunk (FileNotFound on the first iteration if absent)."""

    @abc.abstractmethod
    async def delete(self, tenant: str, file_id: str) -> bool:
        """Remove a file; False when there was none."""

    @abc.abstractmethod
    async def rewrite_record(self, record: TenantFile) -> None:
        """Replace the record of a stored file (same id and bytes). Only for an upload whose
        multipart fields came after its `file` part, before it was answered, and for the
        `created_at` of a reused skill bundle (which the sweep reads with `stat`, never cached)."""

    @abc.abstractmethod
    async def ids(self, tenant: str) -> list[str]:
        """Every stored id of a tenant, ascending (= by creation time). Names only: cheap."""

    @abc.abstractmethod
    async def tenants(self) -> list[str]:
        """Every tenant holding files, ascending (for sweeps over the whole store)."""

    async def start(self) -> None:
        """Prepare the backend (directories, bucket). Called once before use."""

    async def close(self) -> None:
        """Release connections."""

    async def record(self, tenant: str, file_id: str) -> TenantFile:
        """`stat` through the cache of immutable records (for listings)."""
        key = (tenant, file_id)
        cached = self._records.get(key)
        if cached is None:
            cached = await self.stat(tenant, file_id)
            if len(self._records) >= self._cache_size:
                self._records.clear()
            self._records[key] = cached
        return cached

    def _forget(self, tenant: str, file_id: str) -> None:
        self._records.pop((tenant, file_id), None)

    async def page(
        self,
        tenant: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: str = "desc",
        purpose: str | None = None,
        prefix: str = FILE_ID_PREFIX,
        now: float | None = None,
    ) -> tuple[list[TenantFile], bool]:
        """One page of a tenant's unexpired files in `created_at` order, and whether more follow.

        `after` is exclusive in the requested order and need not exist any more: ids sort by
        creation time, so the page starts at the first id beyond it either way.
        """
        ids = [i for i in await self.ids(tenant) if i.startswith(prefix)]
        if order == "desc":
            ids.reverse()
        if after:
            ids = [i for i in ids if (i < after if order == "desc" else i > after)]
        found: list[TenantFile] = []
        position = 0
        while position < len(ids) and len(found) <= limit:
            # Fetch a batch concurrently: on S3 each record not cached is one HEAD request.
            batch = ids[position : position + max(limit + 1 - len(found), 1)]
            position += len(batch)
            records = await asyncio.gather(*(self._maybe_record(tenant, i) for i in batch))
            for item in records:
                if item is None or item.expired(now) or (purpose and item.purpose != purpose):
                    continue
                found.append(item)
        return found[:limit], len(found) > limit

    async def _maybe_record(self, tenant: str, file_id: str) -> TenantFile | None:
        try:
            return await self.record(tenant, file_id)
        except FileNotFound:  # deleted between the listing and now
            return None


def with_bytes(record: TenantFile, size: int) -> TenantFile:
    return replace(record, bytes=size)


def make_store(settings: "FilesSettings") -> TenantFileStore:
    """The backend chosen in settings (`KONTAINERS_FILES_BACKEND`)."""
    if settings.backend == "s3":
        from kontainers.files.s3store import S3Store

        return S3Store.from_settings(settings)
    from kontainers.files.fsstore import FilesystemStore

    return FilesystemStore(settings.root)
