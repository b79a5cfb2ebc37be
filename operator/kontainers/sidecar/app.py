"""The files sidecar's HTTP API: the gateway ↔ sidecar protocol of docs/architecture.md.

    GET    /healthz                   no auth; 200 once the root is open
    PUT    /files?name=<file name>    raw body, streamed → 201 file record (413 over the limit)
    GET    /files?after=&limit=&order= → {"data": [records], "has_more": bool}
    GET    /files/{id}                → record
    DELETE /files/{id}                → 204
    GET    /files/{id}/content        → raw bytes
    PUT    /skills                    raw body: a skill bundle zip → 201 {"name", "path"}

Every other request needs `Authorization: Bearer <token>`. Errors are OpenAI error bodies, so the
gateway can pass them through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from kontainers.api.container_file import FileRecord
from kontainers.api.errors import (
    Handler,
    bad_request,
    error_middleware,
    file_not_found,
    not_found,
    too_large,
    unauthorized,
)
from kontainers.api.pagination import ListParams, UnknownCursor, paginate
from kontainers.sidecar import paths
from kontainers.skills import bundle as skills
from kontainers.sidecar.store import READ_CHUNK, StoredFile, SandboxFileStore, FileTooLarge, NotAFile

log = logging.getLogger(__name__)

UPLOAD_CHUNK = 256 * 1024


@dataclass(frozen=True)
class SidecarConfig:
    root: Path
    token: str
    max_upload_bytes: int
    display_prefix: str = "/mnt/data"
    skills_root: Path | None = None  # None: PUT /skills is refused
    skills_display_prefix: str = "/mnt/skills"
    temp_sweep_seconds: float = 60.0  # how often temp files no upload is writing are removed


CONFIG = web.AppKey("config", SidecarConfig)
STORE = web.AppKey("store", SandboxFileStore)
SKILLS_LOCK = web.AppKey("skills_lock", asyncio.Lock)  # one unpack at a time: each replaces a folder


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/healthz":
        return await handler(request)
    expected = f"Bearer {request.app[CONFIG].token}".encode()
    given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected):  # constant time: no token guessing by timing
        raise unauthorized("Missing or invalid sidecar token.")
    return await handler(request)


def wire(record: StoredFile, prefix: str) -> dict:
    """A file record as the protocol carries it."""
    return FileRecord(
        id=record.id,
        path=f"{prefix.rstrip('/')}/{record.path}",
        bytes=record.bytes,
        source=record.source,
        created_at=record.created_at,
    ).model_dump()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def upload(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    name = request.query.get("name", "")
    try:
        paths.upload_parts(name)
    except paths.UnsafeName as exc:
        raise bad_request(str(exc), param="file", code="invalid_file_name") from None
    if request.content_length is not None and request.content_length > config.max_upload_bytes:
        raise too_large(config.max_upload_bytes)  # early: no byte of it is read
    try:
        record = await request.app[STORE].upload(name, _chunks(request), config.max_upload_bytes)
    except FileTooLarge:
        raise too_large(config.max_upload_bytes) from None
    except NotAFile:
        raise bad_request(f"{name!r} is a directory or lies behind a symbolic link.", param="file") from None
    log.info("file uploaded", extra={"file_id": record.id, "path": record.path, "bytes": record.bytes})
    return web.json_response(wire(record, config.display_prefix), status=201)


async def _chunks(request: web.Request) -> AsyncIterator[bytes]:
    # iter_chunked reads as we consume: a slow disk pauses the socket (backpressure).
    async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
        yield chunk


async def list_files(request: web.Request) -> web.Response:
    try:
        params = ListParams.from_query(request.query)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = str(first["loc"][0]) if first["loc"] else None
        raise bad_request(f"Invalid {param}: {first['msg']}.", param=param) from None
    store = request.app[STORE]
    await store.refresh()  # the sandbox may have written or removed files since
    try:
        page = paginate(
            store.records(), params=params, id_of=lambda r: r.id, key_of=StoredFile.sort_key,
            after_key=store.removed_key(params.after) if params.after else None,
        )
    except UnknownCursor:
        raise bad_request(f"No such file to list after: {params.after!r}.", param="after") from None
    prefix = request.app[CONFIG].display_prefix
    return web.json_response({"data": [wire(r, prefix) for r in page.data], "has_more": page.has_more})


async def get_file(request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    record = await request.app[STORE].get(file_id)
    if record is None:
        raise file_not_found(file_id)
    return web.json_response(wire(record, request.app[CONFIG].display_prefix))


async def delete_file(request: web.Request) -> web.Response:
    file_id = request.match_info["file_id"]
    if not await request.app[STORE].delete(file_id):
        raise file_not_found(file_id)
    log.info("file deleted", extra={"file_id": file_id})
    return web.Response(status=204)


async def file_content(request: web.Request) -> web.StreamResponse:
    file_id = request.match_info["file_id"]
    opened = await request.app[STORE].open_content(file_id)
    if opened is None:
        raise file_not_found(file_id)
    record, fd = opened
    try:
        size = os.fstat(fd).st_size
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = size
        await response.prepare(request)
        remaining = size  # a file the sandbox grows meanwhile is served as it was when opened
        while remaining > 0:
            chunk = await asyncio.to_thread(os.read, fd, min(READ_CHUNK, remaining))
            if not chunk:
                break  # truncated meanwhile: the client sees a short body and fails, as it should
            remaining -= len(chunk)
            await response.write(chunk)  # waits while the client is slow (backpressure)
        await response.write_eof()
        return response
    finally:
        os.close(fd)


async def put_skill(request: web.Request) -> web.Response:
    """Unpack a skill bundle into the skills root, replacing an older copy of its folder."""
    config = request.app[CONFIG]
    if config.skills_root is None:
        raise not_found("This sidecar has no skills directory.")
    limit = skills.DEFAULT_LIMITS.max_compressed_bytes
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit, what="Skill bundle", param=None)
    # Spooled to a hidden file beside the skills (the sidecar's memory limit is small); the bundle
    # is then read from its central directory.
    await asyncio.to_thread(config.skills_root.mkdir, parents=True, exist_ok=True)
    spool = config.skills_root / f".upload-{secrets.token_hex(8)}.zip"
    handle = await asyncio.to_thread(open, spool, "xb")
    try:
        try:
            size = 0
            async for chunk in request.content.iter_chunked(UPLOAD_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise too_large(limit, what="Skill bundle", param=None)
                await asyncio.to_thread(handle.write, chunk)
        finally:
            await asyncio.to_thread(handle.close)
        async with request.app[SKILLS_LOCK]:
            target = await asyncio.to_thread(skills.unpack, spool, config.skills_root)
    except skills.SkillBundleError as exc:
        raise bad_request(str(exc), code="invalid_skill_bundle") from None
    finally:
        await asyncio.to_thread(spool.unlink, missing_ok=True)
    log.info("skill unpacked", extra={"skill": target.name, "bytes": size})
    path = f"{config.skills_display_prefix.rstrip('/')}/{target.name}"
    return web.json_response({"name": target.name, "path": path}, status=201)


def create_app(config: SidecarConfig) -> web.Application:
    """The sidecar application; the root is opened (and swept of dead uploads) on startup."""
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=1024**2)
    app[CONFIG] = config
    app[SKILLS_LOCK] = asyncio.Lock()
    app.cleanup_ctx.append(_store_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_put("/files", upload)
    app.router.add_get("/files", list_files)
    app.router.add_get("/files/{file_id}", get_file)
    app.router.add_delete("/files/{file_id}", delete_file)
    app.router.add_get("/files/{file_id}/content", file_content)
    app.router.add_put("/skills", put_skill)
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = await SandboxFileStore.open(app[CONFIG].root)
    app[STORE] = store

    async def sweep_forever() -> None:  # leftovers of uploads whose cleanup failed, every minute
        while True:
            await asyncio.sleep(app[CONFIG].temp_sweep_seconds)
            try:
                await store.sweep_temp()
            except Exception:
                log.exception("sweeping the upload temp files failed")

    sweeper = asyncio.create_task(sweep_forever(), name="temp sweep")
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper
    store.close()
