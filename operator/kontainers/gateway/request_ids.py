"""`x-request-id` on every reply (errors and streamed downloads included) and in every log line.

The id is made by the outermost middleware and put in the logging context var; the header is
added in `on_response_prepare`, the one place every response passes — also responses that
aiohttp makes itself and streamed ones whose headers go out before the handler returns.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from ..observability import request_id
from ..api.errors import Handler

HEADER = "x-request-id"
REQUEST_ID = web.RequestKey("request_id", str)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request[REQUEST_ID] = new_request_id()
    token = request_id.set(rid)
    try:
        return await handler(request)
    finally:
        request_id.reset(token)


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    rid = request.get(REQUEST_ID) or new_request_id()
    response.headers[HEADER] = rid
