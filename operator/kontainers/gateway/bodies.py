"""Reading request bodies and query parameters into the strict wire models."""

from __future__ import annotations

import json

from aiohttp import web

from .errors import APIError

_NOT_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
             "your HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON.)")


async def read_json_object(request: web.Request) -> dict:
    """The body as a JSON object, or a 400 (bodies over client_max_size are aiohttp's 413)."""
    raw = await request.read()
    if not raw.strip():
        raise APIError(400, "The request body is empty: a JSON object was expected.", code="invalid_json")
    try:
        body = json.loads(raw)
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
