"""Reading request bodies and query parameters into the strict wire models."""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ..api.errors import APIError, bad_request

MAX_FIELD_BYTES = 1024  # text fields of a multipart body (purpose, file_id, …) are short
# What aiohttp's multipart parser raises on a body that is not well-formed: no or wrong boundary,
# bad part headers, a body that ends inside a part.
_MULTIPART_ERRORS = (ValueError, HttpProcessingError)

_NOT_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
             "your HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON.)")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """`object_pairs_hook` refusing a key given twice (json.loads would silently keep the last)."""
    body: dict = {}
    for key, value in pairs:
        if key in body:
            raise _DuplicateKey(key)
        body[key] = value
    return body


def is_json(content_type: str) -> bool:
    """`application/json` or a `+json` type (aiohttp's content_type has no parameters)."""
    return content_type == "application/json" or (content_type.startswith("application/")
                                                  and content_type.endswith("+json"))


async def read_json_object(request: web.Request) -> dict:
    """The body as a JSON object, or a 400 (bodies over client_max_size are aiohttp's 413).

    Lax input is decided here, once for every JSON body (the README's compatibility section):
    - `Content-Type` must be `application/json` (or `…+json`): text/plain, form or missing
      types are refused, not guessed at;
    - the text must be UTF-8; one leading UTF-8 byte order mark is ignored (RFC 8259 §8.1
      allows it), UTF-16/32 texts (which json.loads would accept from bytes) are refused;
    - a key given twice in one object is refused (which one wins differs between parsers).
    """
    if not is_json(request.content_type):
        raise APIError(400, "The request body must be JSON sent with 'Content-Type: application/json'.",
                       code="unsupported_content_type")
    raw = await request.read()
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if not raw.strip():
        raise APIError(400, "The request body is empty: a JSON object was expected.", code="invalid_json")
    try:
        body = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise APIError(400, f"The JSON body gives the key {exc.key!r} more than once.",
                       code="duplicate_key") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise APIError(400, _NOT_JSON, code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_type")
    return body


def retry_count(request: web.Request) -> int:
    """How many times the SDK has retried this request (`x-stainless-retry-count`)."""
    try:
        return max(0, int(request.headers.get("x-stainless-retry-count", "0")))
    except ValueError:
        return 0


def malformed_multipart() -> APIError:
    return APIError(400, "The multipart/form-data body could not be parsed.", code="invalid_multipart")


async def multipart_parts(request: web.Request) -> AsyncIterator[aiohttp.BodyPartReader | aiohttp.MultipartReader]:
    """The parts of a multipart body in order, streamed; a malformed body is a 400."""
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            yield part
    except _MULTIPART_ERRORS:
        raise malformed_multipart() from None


async def read_field(part: aiohttp.BodyPartReader, max_bytes: int = MAX_FIELD_BYTES) -> str:
    """A short text part, read only up to `max_bytes` (past that a 400 naming the field)."""
    data = bytearray()
    try:
        while chunk := await part.read_chunk(max_bytes):
            data += chunk
            if len(data) > max_bytes:
                raise bad_request(f"The '{part.name}' field is too long.", param=part.name)
    except _MULTIPART_ERRORS:
        raise malformed_multipart() from None
    return data.decode(errors="replace").strip()


async def part_chunks(part: aiohttp.BodyPartReader, size: int) -> AsyncIterator[bytes]:
    """The content of a (file) part, chunk by chunk; a body ending inside it is a 400."""
    try:
        while chunk := await part.read_chunk(size):
            yield chunk
    except _MULTIPART_ERRORS:
        raise malformed_multipart() from None
