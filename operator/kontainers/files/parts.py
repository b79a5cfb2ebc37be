"""Storage of the Uploads API: Upload records and their Parts, beside the file store, no HTTP.

An Upload is a small JSON record plus the Parts streamed to it, kept under the same backend as the
tenant's files but outside the names the file store lists:

- directory: `<files root>/.uploads/<tenant>/<upload id>/upload.json` and one file per part
  `part_…` (streamed to a hidden `.tmp-…` in that directory, fsynced, renamed: a part exists whole
  or not at all);
- S3: `<prefix>.uploads/<tenant>/<upload id>/upload.json` and `…/part_…` objects (a part streams
  as a multipart upload of `part_bytes` blocks once it outgrows one block: an object appears only
  when complete).

Tenant names are DNS labels, so `.uploads` is never a tenant's directory or key prefix, and
`FilesystemStore.ids` / `S3Store.ids` never see these names. `complete` streams the parts in the
order given into the file store's ordinary `put` (so the File appears atomically, and an MD5
mismatch detected at the end aborts it like any failed upload) — on S3, when every part but the
last is ≥ 5 MiB and there is no MD5 to check, the File's object is assembled server-side from
copies of the parts instead (also visible only when complete); then the parts are removed.
Expired, cancelled and completed Uploads lose their parts in `sweep`, and their records an hour
after they expired (until then a repeated `complete` or `cancel` gets the same answer).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kontainers.files.fsstore import TEMP_PREFIX, flush_and_sync, unlink_quietly, write_atomically
from kontainers.files.store import READ_CHUNK, TenantFileTooLarge, check_tenant, coalesced, limited

if TYPE_CHECKING:
    from kontainers.files.store import TenantFile, TenantFileStore

UPLOAD_PREFIX = "upload_"
PART_PREFIX = "part_"
UPLOADS_DIR = ".uploads"
RECORD_NAME = "upload.json"
WRITE_BLOCK = 1024 * 1024
RECORD_RETENTION_SECONDS = 3600  # finished Upload records outlive their expires_at by this much
_UPLOAD_RE = re.compile(r"^upload_([0-9a-f]{13})[0-9a-f]{16}$")
_PART_RE = re.compile(r"^part_[0-9a-f]{29}$")


class UploadNotFound(Exception):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"No such Upload object: {upload_id}")
        self.upload_id = upload_id


class ChecksumMismatch(Exception):
    """The assembled content's MD5 is not the one the client gave."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"The md5 of the uploaded parts is {actual}, not {expected}.")
        self.expected, self.actual = expected, actual


def new_upload_id() -> str:
    return f"{UPLOAD_PREFIX}{time.time_ns() // 1000:013x}{secrets.token_hex(8)}"


def new_part_id() -> str:
    return f"{PART_PREFIX}{time.time_ns() // 1000:013x}{secrets.token_hex(8)}"


def is_upload_id(upload_id: str) -> bool:
    return bool(_UPLOAD_RE.match(upload_id))


def is_part_id(part_id: str) -> bool:
    return bool(_PART_RE.match(part_id))


def _created_us(upload_id: str) -> int:
    match = _UPLOAD_RE.match(upload_id)
    return int(match.group(1), 16) if match else 0


@dataclass(frozen=True)
class UploadRecord:
    """One Upload. `status` is as stored: a `pending` one past `expires_at` is expired."""

    id: str
    tenant: str
    filename: str
    purpose: str
    mime_type: str
    bytes: int
    created_at: int
    expires_at: int
    status: str = "pending"
    file_expires_after: int | None = None  # seconds after the File's creation (the create's expires_after)
    file_id: str | None = None  # chosen before the File is written, so a retried complete reuses it
    part_ids: tuple[str, ...] = field(default=())

    def status_at(self, now: float | None = None) -> str:
        if self.status == "pending" and self.expires_at <= (time.time() if now is None else now):
            return "expired"
        return self.status

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "filename": self.filename, "purpose": self.purpose, "mime_type": self.mime_type,
                "bytes": self.bytes, "created_at": self.created_at, "expires_at": self.expires_at,
                "status": self.status, "file_expires_after": self.file_expires_after, "file_id": self.file_id,
                "part_ids": list(self.part_ids)}

    @classmethod
    def from_json(cls, tenant: str, data: dict[str, Any]) -> "UploadRecord":
        return cls(id=str(data["id"]), tenant=tenant, filename=str(data["filename"]), purpose=str(data["purpose"]),
                   mime_type=str(data["mime_type"]), bytes=int(data["bytes"]), created_at=int(data["created_at"]),
                   expires_at=int(data["expires_at"]), status=str(data["status"]),
                   file_expires_after=data.get("file_expires_after"), file_id=data.get("file_id"),
                   part_ids=tuple(data.get("part_ids") or ()))


@dataclass(frozen=True)
class StoredPart:
    id: str
    upload_id: str
    bytes: int
    created_at: int


class UploadStore(abc.ABC):
    """Upload records and parts of every tenant. Backends implement the abstract methods."""

    @abc.abstractmethod
    async def save(self, record: UploadRecord) -> None:
        """Write (or replace) an Upload's record."""

    @abc.abstractmethod
    async def get(self, tenant: str, upload_id: str) -> UploadRecord:
        """The record, or UploadNotFound (also for ids of another tenant, or malformed ones)."""

    @abc.abstractmethod
    async def put_part(self, tenant: str, upload_id: str, part_id: str, chunks: AsyncIterable[bytes], *,
                       max_bytes: int) -> StoredPart:
        """Stream one part; TenantFileTooLarge past `max_bytes`, and then nothing is kept."""

    @abc.abstractmethod
    async def parts(self, tenant: str, upload_id: str) -> dict[str, StoredPart]:
        """The stored parts of an Upload, by id."""

    @abc.abstractmethod
    def read_part(self, tenant: str, upload_id: str, part_id: str) -> AsyncIterator[bytes]:
        """A part's bytes, chunk by chunk."""

    @abc.abstractmethod
    async def remove_parts(self, tenant: str, upload_id: str, part_ids: Iterable[str] | None = None) -> int:
        """Remove the given parts (default: all) of an Upload; the number removed."""

    @abc.abstractmethod
    async def remove(self, tenant: str, upload_id: str) -> None:
        """Remove an Upload entirely: record and parts."""

    @abc.abstractmethod
    async def uploads(self) -> list[tuple[str, str]]:
        """(tenant, upload id) of every Upload held, records or parts (for the sweep)."""

    async def start(self) -> None:
        """Prepare the backend. Called once before use."""

    async def close(self) -> None:
        """Release what start took (the S3 client belongs to the file store)."""

    async def concatenated(self, record: UploadRecord, part_ids: Iterable[str], *,
                           md5: str | None = None) -> AsyncIterator[bytes]:
        """The parts' bytes in the given order; with `md5`, ChecksumMismatch after the last chunk
        (so a store `put` consuming this aborts instead of making the File)."""
        digest = hashlib.md5(usedforsecurity=False) if md5 else None
        for part_id in part_ids:
            async for chunk in self.read_part(record.tenant, record.id, part_id):
                if digest is not None:
                    digest.update(chunk)
                yield chunk
        if digest is not None and digest.hexdigest() != md5.lower():  # type: ignore[union-attr]
            raise ChecksumMismatch(md5.lower(), digest.hexdigest())  # type: ignore[union-attr]

    async def assemble(self, files: "TenantFileStore", target: "TenantFile", record: UploadRecord,
                       part_ids: Iterable[str], *, md5: str | None = None) -> "TenantFile":
        """Make the File `target` of the parts in order: streamed into the file store's `put`
        (atomic; ChecksumMismatch aborts it). Backends may do it without moving the bytes."""
        return await files.put(target, self.concatenated(record, part_ids, md5=md5), max_bytes=record.bytes)

    async def sweep(self, now: float | None = None, *,
                    guard: Callable[[str, str], contextlib.AbstractAsyncContextManager[Any]] | None = None,
                    ) -> dict[str, int]:
        """Expire pending Uploads past `expires_at`, drop parts of finished ones and records an hour
        after they expired, and orphaned parts (no record) of Uploads older than that.

        `guard(tenant, upload_id)` is held around each Upload's step (the gateway's per-Upload
        lock, so a `complete` in progress is never swept from under it)."""
        counts = {"expired": 0, "parts_removed": 0, "records_removed": 0}
        for tenant, upload_id in await self.uploads():
            async with guard(tenant, upload_id) if guard else contextlib.nullcontext():
                await self._sweep_one(tenant, upload_id, time.time() if now is None else now, counts)
        return counts

    async def _sweep_one(self, tenant: str, upload_id: str, now: float, counts: dict[str, int]) -> None:
        try:
            record = await self.get(tenant, upload_id)
        except UploadNotFound:
            if _created_us(upload_id) / 1e6 + 2 * RECORD_RETENTION_SECONDS < now:
                await self.remove(tenant, upload_id)
                counts["records_removed"] += 1
            return
        if record.status == "pending" and record.status_at(now) == "expired":
            record = replace(record, status="expired")
            await self.save(record)
            counts["expired"] += 1
        if record.status == "pending":
            return
        if record.expires_at + RECORD_RETENTION_SECONDS <= now:
            counts["parts_removed"] += len(await self.parts(tenant, upload_id))
            await self.remove(tenant, upload_id)
            counts["records_removed"] += 1
        else:
            counts["parts_removed"] += await self.remove_parts(tenant, upload_id)


def upload_store_for(files: "TenantFileStore", *, part_bytes: int = 8 * 1024 * 1024) -> UploadStore:
    """The Upload store living beside a file store, on the same backend."""
    from kontainers.files.fsstore import FilesystemStore

    if isinstance(files, FilesystemStore):
        return FilesystemUploadStore(files.root / UPLOADS_DIR)
    from kontainers.files.s3store import S3Store

    if isinstance(files, S3Store):
        return S3UploadStore(files, part_bytes=part_bytes)
    raise TypeError(f"no Upload store for {type(files).__name__}")


def _checked(tenant: str, upload_id: str, part_id: str | None = None) -> None:
    """Names become path elements and keys: only our own id shapes pass (no `..`, no `/`)."""
    check_tenant(tenant)
    if not is_upload_id(upload_id):
        raise UploadNotFound(upload_id)
    if part_id is not None and not is_part_id(part_id):
        raise FileNotFoundError(part_id)


class FilesystemUploadStore(UploadStore):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _dir(self, tenant: str, upload_id: str) -> Path:
        _checked(tenant, upload_id)
        return self.root / tenant / upload_id

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def save(self, record: UploadRecord) -> None:
        directory = self._dir(record.tenant, record.id)
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(write_atomically, directory / RECORD_NAME, json.dumps(record.to_json()).encode())

    async def get(self, tenant: str, upload_id: str) -> UploadRecord:
        path = self._dir(tenant, upload_id) / RECORD_NAME
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        return UploadRecord.from_json(tenant, json.loads(raw))

    async def put_part(self, tenant: str, upload_id: str, part_id: str, chunks: AsyncIterable[bytes], *,
                       max_bytes: int) -> StoredPart:
        _checked(tenant, upload_id, part_id)
        directory = self._dir(tenant, upload_id)
        temp = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            handle = await asyncio.to_thread(open, temp, "xb")
        except FileNotFoundError:  # the Upload's directory is gone (removed meanwhile)
            raise UploadNotFound(upload_id) from None
        size = 0
        try:
            try:
                async for block in coalesced(limited(chunks, max_bytes), WRITE_BLOCK):
                    await asyncio.to_thread(handle.write, block)
                    size += len(block)
                await asyncio.to_thread(flush_and_sync, handle)
            finally:
                await asyncio.to_thread(handle.close)
            await asyncio.to_thread(os.replace, temp, directory / part_id)
        except BaseException:
            await asyncio.to_thread(unlink_quietly, temp)
            raise
        return StoredPart(part_id, upload_id, size, int(time.time()))

    async def parts(self, tenant: str, upload_id: str) -> dict[str, StoredPart]:
        return await asyncio.to_thread(self._parts, self._dir(tenant, upload_id), upload_id)

    @staticmethod
    def _parts(directory: Path, upload_id: str) -> dict[str, StoredPart]:
        found = {}
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return {}
        for entry in entries:
            if is_part_id(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    info = entry.stat(follow_symlinks=False)
                    found[entry.name] = StoredPart(entry.name, upload_id, info.st_size, int(info.st_mtime))
        return found

    async def read_part(self, tenant: str, upload_id: str, part_id: str) -> AsyncIterator[bytes]:
        _checked(tenant, upload_id, part_id)
        handle = await asyncio.to_thread(open, self._dir(tenant, upload_id) / part_id, "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, READ_CHUNK * 4):
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def remove_parts(self, tenant: str, upload_id: str, part_ids: Iterable[str] | None = None) -> int:
        directory = self._dir(tenant, upload_id)
        names = list(part_ids) if part_ids is not None else list(await self.parts(tenant, upload_id))
        removed = 0
        for name in names:
            if is_part_id(name) and await asyncio.to_thread(unlink_quietly, directory / name):
                removed += 1
        return removed

    async def remove(self, tenant: str, upload_id: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self._dir(tenant, upload_id), True)

    async def uploads(self) -> list[tuple[str, str]]:
        return await asyncio.to_thread(self._uploads)

    def _uploads(self) -> list[tuple[str, str]]:
        found = []
        try:
            tenants = os.listdir(self.root)
        except FileNotFoundError:
            return []
        for tenant in tenants:
            with contextlib.suppress(NotADirectoryError, FileNotFoundError):
                found.extend((tenant, name) for name in os.listdir(self.root / tenant) if is_upload_id(name))
        return sorted(found)


class S3UploadStore(UploadStore):
    """Keys `<prefix>.uploads/<tenant>/<upload id>/…` in the file store's bucket, with its client."""

    def __init__(self, files: Any, *, part_bytes: int = 8 * 1024 * 1024) -> None:
        from kontainers.files.s3store import MIN_PART_BYTES

        self._files = files  # an S3Store: its bucket, prefix and (once started) client
        self.part_bytes = max(part_bytes, MIN_PART_BYTES)

    @property
    def _client(self) -> Any:
        return self._files._client  # the file store's one connection pool, opened by its start()

    @property
    def _bucket(self) -> str:
        return self._files.bucket

    def _base(self, tenant: str, upload_id: str) -> str:
        _checked(tenant, upload_id)
        return f"{self._files.prefix}{UPLOADS_DIR}/{tenant}/{upload_id}/"

    async def save(self, record: UploadRecord) -> None:
        await self._client.put_object(Bucket=self._bucket, Key=self._base(record.tenant, record.id) + RECORD_NAME,
                                      Body=json.dumps(record.to_json()).encode(), ContentType="application/json")

    async def get(self, tenant: str, upload_id: str) -> UploadRecord:
        from botocore.exceptions import ClientError

        try:
            reply = await self._client.get_object(Bucket=self._bucket, Key=self._base(tenant, upload_id) + RECORD_NAME)
        except ClientError as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                raise UploadNotFound(upload_id) from None
            raise
        async with reply["Body"] as body:
            raw = await body.read()
        return UploadRecord.from_json(tenant, json.loads(raw))

    async def put_part(self, tenant: str, upload_id: str, part_id: str, chunks: AsyncIterable[bytes], *,
                       max_bytes: int) -> StoredPart:
        _checked(tenant, upload_id, part_id)
        key = self._base(tenant, upload_id) + part_id
        blocks = coalesced(limited(chunks, max_bytes), self.part_bytes).__aiter__()
        first = await anext(blocks, b"")
        second = await anext(blocks, None)
        if second is None:
            await self._client.put_object(Bucket=self._bucket, Key=key, Body=first)
            return StoredPart(part_id, upload_id, len(first), int(time.time()))
        upload = await self._client.create_multipart_upload(Bucket=self._bucket, Key=key)
        upload_key = upload["UploadId"]
        done: list[dict[str, Any]] = []
        size = 0
        try:
            number = 0
            for block in (first, second):
                number += 1
                size += len(block)
                done.append(await self._send(key, upload_key, number, block))
            del first, second
            async for block in blocks:  # one block in memory at a time
                number += 1
                size += len(block)
                done.append(await self._send(key, upload_key, number, block))
            await self._client.complete_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_key,
                                                         MultipartUpload={"Parts": done})
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._client.abort_multipart_upload(Bucket=self._bucket, Key=key,
                                                                         UploadId=upload_key))
            raise
        return StoredPart(part_id, upload_id, size, int(time.time()))

    async def assemble(self, files: "TenantFileStore", target: "TenantFile", record: UploadRecord,
                       part_ids: Iterable[str], *, md5: str | None = None) -> "TenantFile":
        """Server-side when S3 allows it: the File's object is a multipart upload whose parts are
        copies of the part objects (UploadPartCopy), so no byte passes through the gateway. S3
        wants every part but the last ≥ 5 MiB; smaller parts, or an `md5` to check (the gateway
        must read the bytes for that), take the streamed path."""
        from kontainers.files.s3store import MIN_PART_BYTES, _metadata

        part_ids = list(part_ids)
        sizes = await self.parts(record.tenant, record.id)
        if md5 or not part_ids or any(sizes[p].bytes < MIN_PART_BYTES for p in part_ids[:-1]) or len(part_ids) > 10_000:
            return await super().assemble(files, target, record, part_ids, md5=md5)
        base = self._base(record.tenant, record.id)
        key = self._files._key(target.tenant, target.id)  # the file store's own key and record format
        metadata = _metadata(target)
        if len(part_ids) == 1:
            await self._client.copy_object(Bucket=self._bucket, Key=key, Metadata=metadata,
                                           MetadataDirective="REPLACE",
                                           CopySource={"Bucket": self._bucket, "Key": base + part_ids[0]})
            return replace(target, bytes=sizes[part_ids[0]].bytes)
        upload = await self._client.create_multipart_upload(Bucket=self._bucket, Key=key, Metadata=metadata)
        upload_key = upload["UploadId"]
        copies = asyncio.Semaphore(8)

        async def copy(number: int, part_id: str) -> dict[str, Any]:
            async with copies:
                reply = await self._client.upload_part_copy(
                    Bucket=self._bucket, Key=key, UploadId=upload_key, PartNumber=number,
                    CopySource={"Bucket": self._bucket, "Key": base + part_id})
            return {"PartNumber": number, "ETag": reply["CopyPartResult"]["ETag"]}

        try:
            done = await asyncio.gather(*(copy(i + 1, p) for i, p in enumerate(part_ids)))
            await self._client.complete_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_key,
                                                         MultipartUpload={"Parts": list(done)})
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._client.abort_multipart_upload(Bucket=self._bucket, Key=key,
                                                                         UploadId=upload_key))
            raise
        return replace(target, bytes=sum(sizes[p].bytes for p in part_ids))

    async def _send(self, key: str, upload_key: str, number: int, body: bytes) -> dict[str, Any]:
        reply = await self._client.upload_part(Bucket=self._bucket, Key=key, UploadId=upload_key,
                                               PartNumber=number, Body=body)
        return {"PartNumber": number, "ETag": reply["ETag"]}

    async def _list(self, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            items.extend(page.get("Contents", []))
        return items

    async def parts(self, tenant: str, upload_id: str) -> dict[str, StoredPart]:
        base = self._base(tenant, upload_id)
        found = {}
        for item in await self._list(base):
            name = item["Key"][len(base):]
            if is_part_id(name):
                found[name] = StoredPart(name, upload_id, int(item["Size"]), int(item["LastModified"].timestamp()))
        return found

    async def read_part(self, tenant: str, upload_id: str, part_id: str) -> AsyncIterator[bytes]:
        _checked(tenant, upload_id, part_id)
        reply = await self._client.get_object(Bucket=self._bucket, Key=self._base(tenant, upload_id) + part_id)
        async with reply["Body"] as body:
            while chunk := await body.read(READ_CHUNK * 4):
                yield chunk

    async def remove_parts(self, tenant: str, upload_id: str, part_ids: Iterable[str] | None = None) -> int:
        base = self._base(tenant, upload_id)
        present = await self.parts(tenant, upload_id)
        names = [name for name in (part_ids if part_ids is not None else present) if name in present]
        await self._delete([base + name for name in names])
        return len(names)

    async def remove(self, tenant: str, upload_id: str) -> None:
        await self._delete([item["Key"] for item in await self._list(self._base(tenant, upload_id))])

    async def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = keys[start:start + 1000]
            if batch:
                await self._client.delete_objects(Bucket=self._bucket, Delete={
                    "Objects": [{"Key": key} for key in batch], "Quiet": True})

    async def uploads(self) -> list[tuple[str, str]]:
        base = f"{self._files.prefix}{UPLOADS_DIR}/"
        found = set()
        for item in await self._list(base):
            pieces = item["Key"][len(base):].split("/")
            if len(pieces) == 3 and is_upload_id(pieces[1]):
                found.add((pieces[0], pieces[1]))
        return sorted(found)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


__all__ = [
    "ChecksumMismatch", "FilesystemUploadStore", "S3UploadStore", "StoredPart", "TenantFileTooLarge",
    "UploadNotFound", "UploadRecord", "UploadStore", "new_part_id", "new_upload_id", "upload_store_for",
]
