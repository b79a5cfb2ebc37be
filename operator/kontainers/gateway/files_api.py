"""`/v1/files`: the OpenAI Files API, mounted by the gateway with `setup(app)`.

Runs behind the gateway's middlewares: the caller's tenant comes from its auth middleware
(`request[TENANT]`), failures are raised as its APIError and formatted by its error middleware.
Uploads stream from the multipart body into the store chunk by chunk; downloads stream back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import quote

import aiohttp
from aiohttp import web

from kontainers.api.file import (
    BATCH_DEFAULT_EXPIRY_SECONDS,
    MAX_EXPIRY_SECONDS,
    MIN_EXPIRY_SECONDS,
    UPLOAD_PURPOSES,
    FileDeleted,
    FileList,
    FileObject,
)
from kontainers.gateway.file_inputs import stored_file
from kontainers.files.store import (
    FileNotFound,
    TenantFile,
    TenantFileStore,
    TenantFileTooLarge,
    is_valid_id,
    make_store,
    new_file_id,
)
from kontainers.gateway.auth import TENANT
from kontainers.gateway.bodies import multipart_parts, part_chunks, read_field
from kontainers.api.errors import CONTROL_CHARACTER, NOT_UTF8, bad_request, file_not_found, invalid_filename, too_large
from kontainers.observability import FILE_BYTES
from kontainers.settings import FilesSettings

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

FILE_STORE = web.AppKey("file_store", TenantFileStore)
FILES_SETTINGS = web.AppKey("files_settings", FilesSettings)

CHUNK = 256 * 1024
MAX_FILENAME_BYTES = 255
_MULTIPART_OVERHEAD = 64 * 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def setup(app: web.Application, settings: FilesSettings | None = None, store: TenantFileStore | None = None) -> None:
    """Mount /v1/files on the gateway app, with the store chosen in settings."""
    settings = settings or FilesSettings()
    app[FILES_SETTINGS] = settings
    app[FILE_STORE] = store or make_store(settings)
    app.cleanup_ctx.append(_store_lifecycle)
    app.router.add_routes(routes)


async def _store_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Open the store, and deliver file_ids/skills into pods while the gateway runs."""
    from kontainers.gateway.delivery import Delivery
    from kontainers.gateway.skills_api import SKILL_STORE
    from kontainers.gateway.state import CLUSTER, SIDECARS

    store = app[FILE_STORE]
    await store.start()
    cluster = app[CLUSTER]
    delivery = Delivery(cluster.containers, store, app[SIDECARS], cluster.annotate_container,
                        skills=app.get(SKILL_STORE))
    task = asyncio.create_task(delivery.run(), name="file delivery")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await store.close()


async def find_file(store: TenantFileStore, tenant: str, file_id: str, *, param: str | None = "file_id") -> TenantFile:
    """A tenant's unexpired file, else a 404 naming the id (other tenants' ids look the same)."""
    return await stored_file(store, tenant, file_id, param=param or "file_id")


def clean_filename(raw: str | None, *, param: str = "file") -> str:
    """The last path element of the client's file name (a client's directories are dropped, as
    OpenAI does), cut to 255 bytes; "upload" when nothing is left.

    Refused with a 400 naming `param` (never silently altered): a name that is not valid UTF-8
    (aiohttp hands such bytes over as surrogates) or that holds NUL or another control character.
    """
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_filename(NOT_UTF8, param=param) from None
    if _CONTROL.search(name):
        raise invalid_filename(CONTROL_CHARACTER, param=param)
    if name in {"", ".", ".."}:
        name = "upload"
    while len(name.encode()) > MAX_FILENAME_BYTES:
        name = name[:-1]
    return name


class _UploadForm:
    """The non-file fields of an upload, checked as they arrive."""

    def __init__(self) -> None:
        self.purpose: str | None = None
        self.anchor: str | None = None
        self.seconds: str | None = None

    def take(self, name: str, value: str) -> None:
        if name == "purpose":
            if value not in UPLOAD_PURPOSES:
                raise bad_request(f"Invalid value for 'purpose': {value!r}. Supported values are "
                                  + ", ".join(f"'{p}'" for p in UPLOAD_PURPOSES) + ".",
                                  param="purpose", code="invalid_value")
            self.purpose = value
        elif name == "expires_after[anchor]":
            if value != "created_at":
                raise bad_request("Invalid value for 'expires_after.anchor': only 'created_at' is supported.",
                                  param="expires_after.anchor", code="invalid_value")
            self.anchor = value
        elif name == "expires_after[seconds]":
            try:
                seconds = int(value)
            except ValueError:
                seconds = -1
            if not MIN_EXPIRY_SECONDS <= seconds <= MAX_EXPIRY_SECONDS:
                raise bad_request(f"Invalid value for 'expires_after.seconds': must be an integer between "
                                  f"{MIN_EXPIRY_SECONDS} and {MAX_EXPIRY_SECONDS}.",
                                  param="expires_after.seconds", code="invalid_value")
            self.seconds = value
        else:
            raise bad_request(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")

    def expires_at(self, created_at: int) -> int | None:
        if (self.anchor is None) != (self.seconds is None):
            missing = "expires_after.seconds" if self.seconds is None else "expires_after.anchor"
            raise bad_request(f"Missing required parameter: '{missing}'.", param=missing,
                              code="missing_required_parameter")
        if self.seconds is not None:
            return created_at + int(self.seconds)
        if self.purpose == "batch":
            return created_at + BATCH_DEFAULT_EXPIRY_SECONDS
        return None


@routes.post("/v1/files")
async def upload_file(request: web.Request) -> web.Response:
    settings, store = request.app[FILES_SETTINGS], request.app[FILE_STORE]
    tenant = request[TENANT].namespace
    limit = settings.max_upload_bytes
    if not request.content_type.startswith("multipart/"):
        raise bad_request("Send multipart/form-data with a 'file' part and a 'purpose' field.", param="file")
    if request.content_length is not None and request.content_length > limit + _MULTIPART_OVERHEAD:
        raise too_large(limit)
    form = _UploadForm()
    stored: TenantFile | None = None
    try:
        async for part in multipart_parts(request):
            if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
                raise bad_request("Nested multipart bodies are not supported.", param="file")
            if part.name != "file":
                form.take(part.name, await read_field(part))
                continue
            if stored is not None:
                raise bad_request("Only one 'file' part may be sent.", param="file")
            now = int(time.time())
            record = TenantFile(id=new_file_id(), tenant=tenant, filename=clean_filename(part.filename),
                                purpose=form.purpose or "", created_at=now)
            try:
                stored = await store.put(record, _chunks(part), max_bytes=limit)
            except TenantFileTooLarge:
                raise too_large(limit) from None
        if stored is None:
            raise bad_request("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")
        if form.purpose is None:
            raise bad_request("Missing required parameter: 'purpose'.", param="purpose",
                              code="missing_required_parameter")
        final = replace(stored, purpose=form.purpose, expires_at=form.expires_at(stored.created_at))
        if final != stored:  # fields that came after the file part
            await store.rewrite_record(final)
    except BaseException:
        if stored is not None:
            await store.delete(tenant, stored.id)
        raise
    log.info("file stored", extra={"file_id": final.id, "tenant": tenant, "bytes": final.bytes})
    return web.json_response(FileObject.of(final).model_dump(mode="json"))


async def _chunks(part: aiohttp.BodyPartReader) -> AsyncIterator[bytes]:
    async for chunk in part_chunks(part, CHUNK):
        FILE_BYTES.labels("upload").inc(len(chunk))
        yield chunk


def _list_query(request: web.Request, max_limit: int) -> tuple[str | None, int, str, str | None]:
    query = request.query
    try:
        limit = int(query.get("limit", max_limit))
    except ValueError:
        limit = 0
    if not 1 <= limit <= max_limit:
        raise bad_request(f"Invalid 'limit': must be an integer between 1 and {max_limit}.", param="limit",
                          code="invalid_value")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("Invalid 'order': must be 'asc' or 'desc'.", param="order", code="invalid_value")
    after = query.get("after")
    if after is not None and not (after.startswith("file-") and is_valid_id(after)):
        # Ids sort by creation time, so a since-deleted id is still a cursor; anything else is not.
        raise bad_request(f"Invalid 'after': {after!r} is not a file id.", param="after", code="invalid_value")
    return after, limit, order, query.get("purpose") or None


@routes.get("/v1/files")
async def list_files(request: web.Request) -> web.Response:
    after, limit, order, purpose = _list_query(request, request.app[FILES_SETTINGS].max_list_limit)
    records, has_more = await request.app[FILE_STORE].page(
        request[TENANT].namespace, after=after, limit=limit, order=order, purpose=purpose)
    data = [FileObject.of(r) for r in records]
    page = FileList(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None,
                    has_more=has_more)
    return web.json_response(page.model_dump(mode="json"))


@routes.get("/v1/files/{file_id}")
async def retrieve_file(request: web.Request) -> web.Response:
    record = await find_file(request.app[FILE_STORE], request[TENANT].namespace, request.match_info["file_id"])
    return web.json_response(FileObject.of(record).model_dump(mode="json"))


@routes.delete("/v1/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    store, tenant = request.app[FILE_STORE], request[TENANT].namespace
    record = await find_file(store, tenant, request.match_info["file_id"])
    if not await store.delete(tenant, record.id):
        raise file_not_found(record.id)
    log.info("file deleted", extra={"file_id": record.id, "tenant": tenant})
    return web.json_response(FileDeleted(id=record.id).model_dump(mode="json"))


@routes.get("/v1/files/{file_id}/content")
async def file_content(request: web.Request) -> web.StreamResponse:
    store, tenant = request.app[FILE_STORE], request[TENANT].namespace
    record = await find_file(store, tenant, request.match_info["file_id"])
    chunks = store.read(tenant, record.id).__aiter__()
    try:
        first = await anext(chunks, b"")  # a file deleted meanwhile is still a clean 404 here
    except FileNotFound:
        raise file_not_found(record.id) from None
    response = web.StreamResponse(headers={
        "Content-Type": "application/octet-stream",
        "Content-Disposition": _disposition(record.filename),
    })
    response.content_length = record.bytes
    await response.prepare(request)
    chunk = first
    while chunk:
        await response.write(chunk)  # waits while the client is slow (backpressure)
        FILE_BYTES.labels("download").inc(len(chunk))
        chunk = await anext(chunks, b"")
    await response.write_eof()
    return response


def _disposition(filename: str) -> str:
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
