"""The S3-compatible backend (aiobotocore): one object per file, `<prefix><tenant>/<id>`.

The record travels as the object's user metadata, so bytes and record appear together: S3 makes
an object visible only when its PutObject or CompleteMultipartUpload succeeds, and an upload
that fails or passes the limit is aborted. Uploads of unknown length go as multipart uploads of
`part_bytes` parts, the next part read while the previous one is sent: at most two parts are
held in memory per upload, whatever the file's size.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

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

if TYPE_CHECKING:
    from kontainers.settings import FilesSettings

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's floor for every part but the last
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class S3Store(TenantFileStore):
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        create_bucket: bool = False,
        part_bytes: int = 8 * 1024 * 1024,
        max_concurrency: int = 32,
    ) -> None:
        super().__init__()
        self.bucket, self.prefix, self.create_bucket = bucket, prefix, create_bucket
        self.part_bytes = max(part_bytes, MIN_PART_BYTES)
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": AioConfig(
                s3={"addressing_style": "path"},  # S3-compatible servers rarely do virtual hosts
                # Plain Content-MD5-free requests: streaming checksums (aws-chunked) are not
                # implemented by every S3-compatible server.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=max_concurrency,
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        }
        self._exit = contextlib.AsyncExitStack()
        self._client: Any = None
        self._heads = asyncio.Semaphore(max_concurrency)

    @classmethod
    def from_settings(cls, settings: "FilesSettings") -> "S3Store":
        secret = lambda value: value.get_secret_value() if value is not None else None  # noqa: E731
        return cls(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=secret(settings.s3_access_key_id),
            secret_access_key=secret(settings.s3_secret_access_key),
            create_bucket=settings.s3_create_bucket,
            part_bytes=settings.s3_part_bytes,
        )

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = await self._exit.enter_async_context(get_session().create_client("s3", **self._client_args))
        if self.create_bucket:
            try:
                await self._client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    async def close(self) -> None:
        await self._exit.aclose()
        self._client = None

    def _key(self, tenant: str, file_id: str) -> str:
        if not is_valid_id(file_id):
            raise FileNotFound(file_id)
        return f"{self.prefix}{check_tenant(tenant)}/{file_id}"

    async def put(self, record: TenantFile, chunks: AsyncIterable[bytes], *, max_bytes: int) -> TenantFile:
        key = self._key(record.tenant, record.id)
        metadata = _metadata(record)
        parts = coalesced(limited(chunks, max_bytes), self.part_bytes).__aiter__()
        first = await anext(parts, b"")
        second = await anext(parts, None)
        if second is None:  # fits one part: a single PutObject
            await self._client.put_object(Bucket=self.bucket, Key=key, Body=first, Metadata=metadata)
            return with_bytes(record, len(first))
        upload = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata=metadata)
        upload_id = upload["UploadId"]
        done: list[dict[str, Any]] = []
        sending: asyncio.Task[None] | None = None
        size = 0

        async def send(number: int, body: bytes) -> None:
            reply = await self._client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
            done.append({"PartNumber": number, "ETag": reply["ETag"]})

        async def blocks() -> AsyncIterator[bytes]:
            yield first
            yield second
            async for block in parts:
                yield block

        try:
            number = 0
            async for block in blocks():  # reading the next block overlaps sending this one
                number += 1
                size += len(block)
                if sending is not None:
                    await sending
                sending = asyncio.create_task(send(number, block))
            if sending is not None:
                await sending
            done.sort(key=lambda part: part["PartNumber"])
            await self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
            )
        except BaseException:
            if sending is not None and not sending.done():
                sending.cancel()
                with contextlib.suppress(BaseException):
                    await sending
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                )
            raise
        return with_bytes(record, size)

    async def stat(self, tenant: str, file_id: str) -> TenantFile:
        key = self._key(tenant, file_id)
        async with self._heads:
            try:
                head = await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _NOT_FOUND:
                    raise FileNotFound(file_id) from None
                raise
        meta = head.get("Metadata", {})
        expires_at = meta.get("expires-at")
        return TenantFile(
            id=file_id,
            tenant=tenant,
            filename=unquote(meta.get("filename", file_id)),
            purpose=meta.get("purpose", "user_data"),
            created_at=int(meta.get("created-at") or head["LastModified"].timestamp()),
            bytes=int(head["ContentLength"]),
            expires_at=int(expires_at) if expires_at else None,
        )

    async def read(self, tenant: str, file_id: str) -> AsyncIterator[bytes]:
        key = self._key(tenant, file_id)
        try:
            reply = await self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                raise FileNotFound(file_id) from None
            raise
        async with reply["Body"] as body:
            while chunk := await body.read(READ_CHUNK):
                yield chunk

    async def delete(self, tenant: str, file_id: str) -> bool:
        self._forget(tenant, file_id)
        try:
            await self.stat(tenant, file_id)  # S3 deletes answer 204 for absent keys too
        except FileNotFound:
            return False
        await self._client.delete_object(Bucket=self.bucket, Key=self._key(tenant, file_id))
        return True

    async def rewrite_record(self, record: TenantFile) -> None:
        key = self._key(record.tenant, record.id)
        self._forget(record.tenant, record.id)
        # A server-side copy onto itself is how S3 replaces an object's metadata.
        await self._client.copy_object(
            Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
            Metadata=_metadata(record), MetadataDirective="REPLACE",
        )

    async def ids(self, tenant: str) -> list[str]:
        prefix = f"{self.prefix}{check_tenant(tenant)}/"
        found: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                name = item["Key"][len(prefix) :]
                if is_valid_id(name):
                    found.append(name)
        return sorted(found)

    async def tenants(self) -> list[str]:
        found: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix):].rstrip("/")
                if is_tenant(name):
                    found.append(name)
        return sorted(found)


def _metadata(record: TenantFile) -> dict[str, str]:
    # User metadata must be ASCII: the file name goes percent-encoded.
    meta = {"filename": quote(record.filename, safe=""), "purpose": record.purpose, "created-at": str(record.created_at)}
    if record.expires_at is not None:
        meta["expires-at"] = str(record.expires_at)
    return meta


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
