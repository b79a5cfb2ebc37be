"""`/v1/containers/{container_id}/files…`: proxied to the container's sidecar, streamed both ways.

Uploads go part → sidecar chunk by chunk (aiohttp's flow control on both sockets gives
backpressure), downloads sidecar → client the same way: memory stays flat whatever the size.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

from ..api.container_file import ContainerFile, ContainerFileCreateParams, ContainerFileDeleted, FileRecord
from ..api.pagination import ListParams, Page
from ..observability import FILE_BYTES
from . import resource
from .auth import TENANT
from .bodies import multipart_parts, read_field, read_json_object
from .file_inputs import copy_into_container, stored_file
from .files_api import FILE_STORE
from .relay import relay
from .container_routes import find_container, touch
from ..api.errors import (
    NOT_UTF8,
    APIError,
    bad_request,
    container_expired,
    file_not_found,
    invalid_filename,
    not_ready,
    too_large,
)
from .state import SETTINGS, SIDECARS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

CHUNK = 256 * 1024
_FILE_ID = re.compile(r"^cfile_[A-Za-z0-9]{1,64}$")
_MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file in a multipart body


class UploadTooLarge(Exception):
    pass


def usable_container(request: web.Request) -> dict:
    """The caller's container, if its files can be used now: 400 expired, 503 while starting."""
    obj = find_container(request)
    status = resource.status_of(obj)
    if status == "expired":
        raise container_expired()
    if status == "failed":
        message = (obj.get("status") or {}).get("message") or "the container failed to start"
        raise APIError(400, f"Container has failed: {message}", code="container_failed")
    if status != "running" or not (obj.get("status") or {}).get("podIP"):
        raise not_ready(request.app[SETTINGS].not_ready_retry_after)
    touch(request, obj)
    return obj


def file_id_of(request: web.Request) -> str:
    file_id = request.match_info["file_id"]
    if not _FILE_ID.match(file_id):
        raise file_not_found(file_id)
    return file_id


def wire_file(obj: Mapping, record: FileRecord) -> dict:
    return ContainerFile(**record.model_dump(), container_id=resource.container_id(obj)).model_dump(mode="json")


@routes.post("/v1/containers/{container_id}/files")
async def create_file(request: web.Request) -> web.Response:
    if request.content_type == "application/json":
        find_container(request)
        params = ContainerFileCreateParams.model_validate(await read_json_object(request))
        return await _copy_stored_file(request, usable_container(request), params.file_id)
    obj = usable_container(request)
    if request.content_type != "multipart/form-data":
        raise bad_request("Send multipart/form-data with a `file` part, or JSON with `file_id`.", param="file")
    return await _upload(request, obj)


async def _upload(request: web.Request, obj: dict) -> web.Response:
    limit = request.app[SETTINGS].max_upload_bytes
    if request.content_length is not None and request.content_length > limit + _MULTIPART_OVERHEAD:
        raise too_large(limit)
    part = await _file_part(request)
    if part.name == "file_id":  # the multipart spelling of {"file_id": …}
        return await _copy_stored_file(request, obj, await read_field(part))
    filename = part.filename or "upload"
    try:
        filename.encode("utf-8")  # bytes that are not UTF-8 arrive as surrogates: refused, not mangled
    except UnicodeEncodeError:
        raise invalid_filename(NOT_UTF8) from None

    sent = 0
    over_limit = interrupted = False

    async def read_chunk() -> bytes:
        nonlocal interrupted
        try:
            return await part.read_chunk(CHUNK)
        except (ConnectionError, aiohttp.ClientPayloadError, asyncio.IncompleteReadError, ValueError):
            interrupted = True
            raise

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent, over_limit
        while chunk := await read_chunk():
            sent += len(chunk)
            if sent > limit:
                over_limit = True
                raise UploadTooLarge()
            FILE_BYTES.labels("upload").inc(len(chunk))
            yield chunk

    try:
        record = await request.app[SIDECARS].upload(obj, filename, chunks())
    except Exception:  # an APIError too: a body that stopped coming also breaks the sidecar call
        if over_limit:
            raise too_large(limit) from None
        if interrupted or request.transport is None or request.transport.is_closing():
            # The client went away mid-upload; the sidecar discards the partial file.
            log.info("upload to %s interrupted by the client after %d bytes", resource.container_id(obj), sent)
            raise APIError(400, "The upload was interrupted before the file was complete.", param="file",
                           code="upload_interrupted") from None
        raise
    log.info("uploaded %s (%d bytes) to %s", record.id, record.bytes, resource.container_id(obj))
    return web.json_response(wire_file(obj, record))


async def _file_part(request: web.Request) -> aiohttp.BodyPartReader:
    """The `file` part of the multipart body (parts before it are skipped unread)."""
    async for part in multipart_parts(request):
        if not isinstance(part, aiohttp.BodyPartReader):
            continue
        if part.name in ("file", "file_id"):
            return part
        await part.release()
    raise bad_request("Missing required parameter: 'file'.", param="file", code="missing_required_parameter")


async def _copy_stored_file(request: web.Request, obj: dict, file_id: str) -> web.Response:
    """`file_id`: stream a Files API file of the caller into the container."""
    store = request.app[FILE_STORE]
    stored = await stored_file(store, request[TENANT].namespace, file_id, param="file_id")
    record = await copy_into_container(store, stored, request.app[SIDECARS].upload, obj)
    FILE_BYTES.labels("upload").inc(record.bytes)
    log.info("copied %s (%d bytes) to %s as %s", stored.id, record.bytes, resource.container_id(obj), record.id)
    return web.json_response(wire_file(obj, record))


@routes.get("/v1/containers/{container_id}/files")
async def list_files(request: web.Request) -> web.Response:
    params = ListParams.from_query(request.query)
    obj = usable_container(request)
    listing = await request.app[SIDECARS].list(obj, after=params.after, limit=params.limit, order=params.order)
    data = [wire_file(obj, record) for record in listing.data]
    page = Page(data=data, has_more=bool(listing.has_more), first_id=data[0]["id"] if data else None,
                last_id=data[-1]["id"] if data else None)
    return web.json_response(page.envelope())


@routes.get("/v1/containers/{container_id}/files/{file_id}")
async def retrieve_file(request: web.Request) -> web.Response:
    obj = usable_container(request)
    record = await request.app[SIDECARS].get(obj, file_id_of(request))
    return web.json_response(wire_file(obj, record))


@routes.delete("/v1/containers/{container_id}/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    obj = usable_container(request)
    file_id = file_id_of(request)
    await request.app[SIDECARS].delete(obj, file_id)
    return web.json_response(ContainerFileDeleted(id=file_id).model_dump(mode="json"))


@routes.get("/v1/containers/{container_id}/files/{file_id}/content")
async def file_content(request: web.Request) -> web.StreamResponse:
    obj = usable_container(request)
    async with request.app[SIDECARS].content(obj, file_id_of(request)) as upstream:
        response = web.StreamResponse(headers={
            "Content-Type": upstream.headers.get("Content-Type", "application/octet-stream"),
            **{k: v for k, v in upstream.headers.items() if k.lower() == "content-disposition"},
        })
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await relay(upstream, request, response, FILE_BYTES.labels("download").inc)
        return response
