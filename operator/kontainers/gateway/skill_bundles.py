"""The bundle of a Skills API create: a multipart body of `files` (one zip) or `files[]` (the files of
one folder, each named by its path in it), spooled and checked exactly as an inline skill's zip.

The body is spooled to a temporary file (memory first, /tmp past `SPOOL_MEMORY`), never held
whole: a bundle may be 50 MB compressed, a directory upload inflate to 250 MB. Refusals are the
400s of inline skills (`invalid_skill_bundle`, the same wording), naming `files`.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

import aiohttp
from aiohttp import web

from kontainers.api.errors import APIError, bad_request
from kontainers.gateway.bodies import multipart_parts, part_chunks, read_field
from kontainers.skills.bundle import DEFAULT_LIMITS, SkillBundle, SkillBundleError, validate
from kontainers.skills.folder import FolderZip
from kontainers.skills.manifest import Manifest, read_manifest

SPOOL_MEMORY = 8 * 1024 * 1024
CHUNK = 256 * 1024
_ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-zip")
_ZIP_MAGIC = b"PK\x03\x04"
_TRUE, _FALSE = ("true", "1"), ("false", "0")


@dataclass
class ReceivedBundle:
    """A validated bundle, spooled: its zip (`handle`, rewound), what it holds and its digest."""

    handle: BinaryIO
    bundle: SkillBundle
    manifest: Manifest
    sha256: str
    bytes: int
    default: bool | None  # the `default` field of a version create, when sent

    def close(self) -> None:
        self.handle.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        self.handle.seek(0)
        while chunk := await asyncio.to_thread(self.handle.read, CHUNK):
            yield chunk


def invalid_bundle(exc: SkillBundleError) -> APIError:
    """The inline skills' 400, for the Skills API's `files`."""
    return bad_request(f"Invalid skill bundle: {exc}.", param="files", code="invalid_skill_bundle")


async def receive_bundle(request: web.Request, *, allow_default: bool = False) -> ReceivedBundle:
    """Read, spool and validate the body's bundle; a 400 naming the field when refused."""
    if not request.content_type.startswith("multipart/"):
        raise bad_request("Send multipart/form-data with the skill's files ('files[]') or one zip ('files').",
                          param="files")
    limit = DEFAULT_LIMITS.max_compressed_bytes
    if request.content_length is not None and request.content_length > DEFAULT_LIMITS.max_total_bytes + 1024 * 1024:
        raise invalid_bundle(SkillBundleError(f"skill bundle is larger than {limit} bytes compressed"))
    handle: BinaryIO = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # type: ignore[assignment]
    try:
        default, folder, zipped = await _spool(request, handle, allow_default)
        if folder is None and not zipped:
            raise bad_request("Missing required parameter: 'files'.", param="files",
                              code="missing_required_parameter")
        received = await asyncio.to_thread(_check, handle, folder)
        received.default = default
        return received
    except SkillBundleError as exc:
        handle.close()
        raise invalid_bundle(exc) from None
    except BaseException:
        handle.close()
        raise


async def _spool(request: web.Request, handle: BinaryIO, allow_default: bool) -> tuple[bool | None, FolderZip | None, bool]:
    """Write the zip, or the folder's files as a zip, into `handle`."""
    default: bool | None = None
    folder: FolderZip | None = None
    zipped = False
    limit = DEFAULT_LIMITS.max_compressed_bytes
    try:
        async for part in multipart_parts(request):
            if not isinstance(part, aiohttp.BodyPartReader) or not part.name:
                raise bad_request("Nested multipart bodies are not supported.", param="files")
            if part.name == "default" and allow_default:
                default = _boolean(await read_field(part))
                continue
            if part.name not in ("files", "files[]"):
                raise bad_request(f"Unknown parameter: '{part.name}'.", param=part.name, code="unknown_parameter")
            chunks = part_chunks(part, CHUNK).__aiter__()
            first = await anext(chunks, b"")
            if zipped:
                raise bad_request("Send one zip, or the files of one folder, not both.", param="files")
            if folder is None and _is_zip(part, first):
                zipped = True
                size = 0
                chunk = first
                while chunk:
                    size += len(chunk)
                    if size > limit:
                        raise SkillBundleError(f"skill bundle is larger than {limit} bytes compressed")
                    await asyncio.to_thread(handle.write, chunk)
                    chunk = await anext(chunks, b"")
                continue
            if folder is None:
                folder = FolderZip(handle)
            folder.start(part.filename or "")
            chunk = first
            while chunk:
                await asyncio.to_thread(folder.write, chunk)
                chunk = await anext(chunks, b"")
        if folder is not None:
            await asyncio.to_thread(folder.close)
    except BaseException:
        if folder is not None:
            folder.abandon()  # before the caller closes `handle` under it
        raise
    return default, folder, zipped


def _is_zip(part: aiohttp.BodyPartReader, first: bytes) -> bool:
    """A zip is a part without a folder in its name that is named, typed or shaped like a zip."""
    filename = (part.filename or "").replace("\\", "/")
    if "/" in filename:
        return False
    content_type = (part.headers.get(aiohttp.hdrs.CONTENT_TYPE) or "").split(";")[0].strip().lower()
    return filename.lower().endswith(".zip") or content_type in _ZIP_TYPES or first.startswith(_ZIP_MAGIC)


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad_request("Invalid value for 'default': expected a boolean.", param="default", code="invalid_value")


def _check(handle: BinaryIO, folder: FolderZip | None) -> ReceivedBundle:
    """Validate the spooled zip and read its manifest and digest (blocking: run in a thread)."""
    handle.flush()
    bundle = validate(handle)
    manifest = read_manifest(handle, bundle)
    digest = hashlib.sha256()
    size = 0
    handle.seek(0)
    while block := handle.read(1024 * 1024):
        digest.update(block)
        size += len(block)
    handle.seek(0)
    return ReceivedBundle(handle=handle, bundle=bundle, manifest=manifest, sha256=digest.hexdigest(), bytes=size,
                          default=None)
