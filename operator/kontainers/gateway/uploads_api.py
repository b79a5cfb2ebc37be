"""`/v1/uploads`: the OpenAI Uploads API (a File sent in parts), mounted with `setup(app)` after files_api.

- `POST /v1/uploads` → an `upload` (pending; expires an hour later) that will hold `bytes` bytes;
- `POST /v1/uploads/{id}/parts` (multipart `data`, ≤ 64 MB) → an `upload.part`, streamed into the
  Upload store chunk by chunk (never held whole);
- `POST /v1/uploads/{id}/complete` `{part_ids, md5?}` → the Upload, `completed`, with its `file`:
  the parts in that order must add up to `bytes`; the File is an ordinary Files API file
  (`file_ids` of a container, `containers.files.create(file_id=…)`, `/v1/files/{id}/content`);
- `POST /v1/uploads/{id}/cancel` → the Upload, `cancelled`; its parts are removed.

Retries: a repeated `complete` with the same part ids answers the same Upload and File (its file id
is recorded before the File is written, so one that failed midway is finished, not duplicated); a
repeated `cancel` answers the cancelled Upload. One Upload's state changes are serialised in this
process (`KeyedLocks`), the expiry sweep included; two gateway replicas racing on one Upload's
`complete` and `cancel` at the same instant are not (the File may then exist beside a cancelled
Upload — never a partial File).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
from aiohttp import web

from kontainers.api.errors import APIError, bad_request, not_found, too_large
from kontainers.api.file import BATCH_DEFAULT_EXPIRY_SECONDS, FileObject
from kontainers.api.upload import Upload, UploadCompleteParams, UploadCreateParams, UploadPart
from kontainers.files.parts import (
    ChecksumMismatch,
    UploadNotFound,
    UploadRecord,
    UploadStore,
    new_part_id,
    new_upload_id,
    upload_store_for,
)
from kontainers.files.store import FileNotFound, TenantFile, TenantFileTooLarge, new_file_id
from kontainers.gateway.auth import TENANT
from kontainers.gateway.bodies import multipart_parts, part_chunks, read_json_object
from kontainers.gateway.files_api import CHUNK, FILE_STORE, FILES_SETTINGS, clean_filename
from kontainers.gateway.keyed_locks import KeyedLocks
from kontainers.gateway.periodic import repeat, running
from kontainers.observability import FILE_BYTES

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


UPLOAD_STORE = web.AppKey("upload_store", UploadStore)
UPLOAD_LOCKS = web.AppKey("upload_locks", KeyedLocks)


def setup(app: web.Application) -> None:
    """Mount /v1/uploads beside /v1/files (whose store, settings and lifecycle it shares)."""
    settings = app[FILES_SETTINGS]
    app[UPLOAD_STORE] = upload_store_for(app[FILE_STORE], part_bytes=settings.s3_part_bytes)
    app[UPLOAD_LOCKS] = KeyedLocks()
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_routes(routes)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start the store (after the file store: it may share its client) and the expiry sweep."""
    uploads = app[UPLOAD_STORE]
    await uploads.start()
    sweeps = repeat(lambda: _sweep(app), lambda: app[FILES_SETTINGS].upload_sweep_seconds, what="upload sweep")
    async with running(sweeps, "upload expiry sweep"):
        yield
    await uploads.close()


async def _sweep(app: web.Application) -> None:
    counts = await app[UPLOAD_STORE].sweep(guard=app[UPLOAD_LOCKS])
    if any(counts.values()):
        log.info("uploads swept", extra=counts)


def upload_not_found(upload_id: str) -> APIError:
    return not_found(f"No such Upload object: {upload_id}", param="upload_id")


def wrong_status(action: str, status: str) -> APIError:
    return bad_request(f"Cannot {action} an Upload whose status is '{status}'.", param="upload_id",
                       code="invalid_upload_status")


async def _record(request: web.Request) -> UploadRecord:
    upload_id = request.match_info["upload_id"]
    try:
        return await request.app[UPLOAD_STORE].get(request[TENANT].namespace, upload_id)
    except UploadNotFound:
        raise upload_not_found(upload_id) from None


@routes.post("/v1/uploads")
async def create_upload(request: web.Request) -> web.Response:
    settings = request.app[FILES_SETTINGS]
    params = UploadCreateParams.model_validate(await read_json_object(request))
    if params.bytes > settings.upload_max_bytes:
        raise bad_request(f"Invalid value for 'bytes': an Upload may hold at most {settings.upload_max_bytes} bytes.",
                          param="bytes", code="invalid_value")
    now = int(time.time())
    record = UploadRecord(
        id=new_upload_id(), tenant=request[TENANT].namespace, filename=clean_filename(params.filename, param="filename"),
        purpose=params.purpose, mime_type=params.mime_type, bytes=params.bytes, created_at=now,
        expires_at=now + settings.upload_expiry_seconds,
        file_expires_after=params.expires_after.seconds if params.expires_after else None,
    )
    await request.app[UPLOAD_STORE].save(record)
    log.info("upload created", extra={"upload_id": record.id, "tenant": record.tenant, "bytes": record.bytes})
    return web.json_response(Upload.of(record).model_dump(mode="json"))


@routes.post("/v1/uploads/{upload_id}/parts")
async def add_part(request: web.Request) -> web.Response:
    settings, uploads = request.app[FILES_SETTINGS], request.app[UPLOAD_STORE]
    record = await _record(request)
    if (status := record.status_at()) != "pending":
        raise wrong_status("add a Part to", status)
    part_limit = settings.upload_part_max_bytes
    if request.content_length is not None and request.content_length > part_limit + 64 * 1024:
        raise too_large(part_limit, what="Part", param="data")
    # Retried parts may be stored twice, so the room allows one part beyond `bytes`; it bounds
    # what an Upload can pile up, and `complete` checks the exact sum of the parts it is given.
    held = sum(part.bytes for part in (await uploads.parts(record.tenant, record.id)).values())
    room = record.bytes + part_limit - held
    if room <= 0:
        raise bad_request(f"The parts of this Upload already hold {held} bytes of its {record.bytes}.",
                          param="data", code="upload_full")
    if not request.content_type.startswith("multipart/"):
        raise bad_request("Send multipart/form-data with a 'data' part.", param="data")
    part: UploadPart | None = None
    try:
        async for field in multipart_parts(request):
            if not isinstance(field, aiohttp.BodyPartReader) or field.name != "data":
                name = getattr(field, "name", None) or "data"
                raise bad_request(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
            if part is not None:
                raise bad_request("Only one 'data' part may be sent.", param="data")
            part_id = new_part_id()
            try:
                stored = await uploads.put_part(record.tenant, record.id, part_id, _chunks(field),
                                                max_bytes=min(part_limit, room))
            except TenantFileTooLarge:
                if part_limit <= room:
                    raise too_large(part_limit, what="Part", param="data") from None
                raise bad_request(f"This part would take the Upload past {record.bytes} bytes.", param="data",
                                  code="upload_full") from None
            except UploadNotFound:
                raise upload_not_found(record.id) from None
            part = UploadPart(id=stored.id, created_at=stored.created_at, upload_id=record.id)
        if part is None:
            raise bad_request("Missing required parameter: 'data'.", param="data", code="missing_required_parameter")
        # Cancelled, completed or swept while the part streamed: keep nothing of it.
        current = await uploads.get(record.tenant, record.id)
        if (status := current.status_at()) != "pending":
            raise wrong_status("add a Part to", status)
    except BaseException:
        if part is not None:
            with contextlib.suppress(Exception):
                await uploads.remove_parts(record.tenant, record.id, [part.id])
        raise
    return web.json_response(part.model_dump(mode="json"))


async def _chunks(field: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    async for chunk in part_chunks(field, CHUNK):
        FILE_BYTES.labels("upload").inc(len(chunk))
        yield chunk


@routes.post("/v1/uploads/{upload_id}/complete")
async def complete_upload(request: web.Request) -> web.Response:
    params = UploadCompleteParams.model_validate(await read_json_object(request))
    uploads, files = request.app[UPLOAD_STORE], request.app[FILE_STORE]
    tenant, upload_id = request[TENANT].namespace, request.match_info["upload_id"]
    async with request.app[UPLOAD_LOCKS](tenant, upload_id):
        record = await _record(request)
        status = record.status_at()
        if status == "completed" and list(record.part_ids) == params.part_ids:
            return web.json_response(Upload.of(record, file=await _file_of(files, record)).model_dump(mode="json"))
        if status != "pending":
            raise wrong_status("complete", status)
        stored = await uploads.parts(tenant, upload_id)
        seen: set[str] = set()
        for index, part_id in enumerate(params.part_ids):
            if part_id not in stored:
                raise bad_request(f"No such Part of this Upload: {part_id}", param=f"part_ids[{index}]",
                                  code="invalid_value")
            if part_id in seen:
                raise bad_request(f"Part {part_id} is listed twice.", param=f"part_ids[{index}]", code="invalid_value")
            seen.add(part_id)
        total = sum(stored[part_id].bytes for part_id in params.part_ids)
        if total != record.bytes:
            raise bad_request(f"The parts hold {total} bytes, but the Upload was created with bytes={record.bytes}.",
                              param="part_ids", code="invalid_value")
        # The File's id is recorded first: a complete interrupted after the File was written is
        # finished by its retry instead of leaving a second File behind.
        record = replace(record, file_id=record.file_id or new_file_id(), part_ids=tuple(params.part_ids))
        await uploads.save(record)
        file = await _existing_file(files, record)
        if file is None:
            file = await _assemble(files, uploads, record, params.md5)
        record = replace(record, status="completed")
        await uploads.save(record)
        await uploads.remove_parts(tenant, upload_id)
    log.info("upload completed", extra={"upload_id": upload_id, "tenant": tenant, "file_id": file.id,
                                        "bytes": file.bytes, "parts": len(params.part_ids)})
    return web.json_response(Upload.of(record, file=FileObject.of(file)).model_dump(mode="json"))


async def _assemble(files, uploads: UploadStore, record: UploadRecord, md5: str | None) -> TenantFile:
    now = int(time.time())
    if record.file_expires_after is not None:
        expires_at: int | None = now + record.file_expires_after
    else:
        expires_at = now + BATCH_DEFAULT_EXPIRY_SECONDS if record.purpose == "batch" else None
    assert record.file_id is not None
    target = TenantFile(id=record.file_id, tenant=record.tenant, filename=record.filename, purpose=record.purpose,
                        created_at=now, expires_at=expires_at)
    try:
        return await uploads.assemble(files, target, record, record.part_ids, md5=md5)
    except ChecksumMismatch as exc:
        raise bad_request(f"Invalid value for 'md5': {exc}", param="md5", code="checksum_mismatch") from None


async def _existing_file(files, record: UploadRecord) -> TenantFile | None:
    if record.file_id is None:
        return None
    try:
        return await files.stat(record.tenant, record.file_id)
    except FileNotFound:
        return None


async def _file_of(files, record: UploadRecord) -> FileObject | None:
    found = await _existing_file(files, record)
    return FileObject.of(found) if found is not None and not found.expired() else None


@routes.post("/v1/uploads/{upload_id}/cancel")
async def cancel_upload(request: web.Request) -> web.Response:
    uploads = request.app[UPLOAD_STORE]
    tenant, upload_id = request[TENANT].namespace, request.match_info["upload_id"]
    async with request.app[UPLOAD_LOCKS](tenant, upload_id):
        record = await _record(request)
        status = record.status_at()
        if status not in ("pending", "cancelled"):
            raise wrong_status("cancel", status)
        if record.status != "cancelled":
            record = replace(record, status="cancelled")
            await uploads.save(record)
        removed = await uploads.remove_parts(tenant, upload_id)
    log.info("upload cancelled", extra={"upload_id": upload_id, "tenant": tenant, "parts_removed": removed})
    return web.json_response(Upload.of(record).model_dump(mode="json"))
