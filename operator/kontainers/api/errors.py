"""The OpenAI error vocabulary, for every HTTP app of kontainers (the gateway and the files sidecar).

Every failure on the wire is `{"error": {message, type, param, code}}`: the SDKs read `body.error`
to build their exceptions, and the HTTP status picks the exception class. Handlers raise `APIError`
(usually through one of the constructors below, so each error is worded once); the one
`error_middleware` formats it. Anything else that escapes a handler — aiohttp's own HTTP
exceptions (unknown route, wrong method, body too large), a pydantic ValidationError or a bug — is
turned into the same shape. The sidecar's errors keep this shape so the gateway can pass them on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from pydantic import BaseModel, Field, ValidationError

from .validation import describe

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ErrorObject(BaseModel):
    """What went wrong, in the shape OpenAI returns."""

    message: str = Field(description="Human-readable explanation.")
    type: str = Field(description="Error category, e.g. `invalid_request_error`.")
    param: str | None = Field(default=None, description="The request parameter at fault, if any.")
    code: str | None = Field(default=None, description="Machine-readable error code, if any.")


class ErrorResponse(BaseModel):
    """The body of every non-2xx JSON reply."""

    error: ErrorObject


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """The JSON-ready error body for a reply."""
    return ErrorResponse(error=ErrorObject(message=message, type=type, param=param, code=code)).model_dump()


class APIError(Exception):
    """An error reply: status, and the fields of the OpenAI error object."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def response(self) -> web.Response:
        body = error_body(self.message, self.type, self.param, self.code)
        return web.json_response(body, status=self.status, headers=self.headers)


# The vocabulary: each error worded once.

def invalid_params(error: ValidationError) -> APIError:
    """400 naming the first offending parameter."""
    message, param, code = describe(error)
    return APIError(400, message, param=param, code=code)


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def not_found(message: str, *, param: str | None = None) -> APIError:
    return APIError(404, message, param=param, code="not_found")


def container_not_found(container_id: str) -> APIError:
    return not_found(f"No container found with id '{container_id}'.", param="container_id")


def file_not_found(file_id: str, param: str | None = "file_id") -> APIError:
    """404 for a file of the Files API or of a container (the sidecar's too), in OpenAI's words."""
    return not_found(f"No such File object: {file_id}", param=param)


def too_large(limit: int, *, what: str = "File", param: str | None = "file") -> APIError:
    """413 for an upload over `limit` bytes: a file, or (what="Skill bundle", param=None) a bundle."""
    return APIError(413, f"{what} is larger than the limit of {limit} bytes.", param=param, code="file_too_large")


def invalid_filename(reason: str, *, param: str | None = "file") -> APIError:
    """400 for a file name refused as it is (never silently altered): `reason` says why."""
    return APIError(400, f"Invalid file name: {reason}.", param=param, code="invalid_filename")


NOT_UTF8 = "it is not valid UTF-8"
CONTROL_CHARACTER = "it contains NUL or another control character"


def container_expired() -> APIError:
    return APIError(400, "Container is expired.", code="container_expired")


def not_ready(retry_after: int, message: str = "The container is starting; retry shortly.") -> APIError:
    return APIError(503, message, type="server_error", code="container_not_ready",
                    headers={"Retry-After": str(retry_after), "retry-after-ms": str(retry_after * 1000)})


def unauthorized(message: str) -> APIError:
    return APIError(401, message, code="invalid_api_key")


def server_error(message: str = "The server had an error while processing your request.") -> APIError:
    return APIError(500, message, type="server_error")


_AIOHTTP_MESSAGES = {
    404: "Unknown request URL: {method} {path}.",
    405: "Method {method} is not allowed for {path}.",
    413: "Request body too large.",
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place failures become OpenAI error bodies; handlers raise, they do not format."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects pass through unchanged
        if request.writer.output_size > 0:
            raise
        return _from_http_exception(request, exc).response()
    except Exception as exc:
        if request.writer.output_size > 0:
            # A streamed reply already started: another response cannot follow; aiohttp closes
            # the connection, so the client sees a truncated body rather than a fake success.
            raise
        if isinstance(exc, APIError):
            return exc.response()
        if isinstance(exc, ValidationError):
            return invalid_params(exc).response()
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return server_error().response()


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> APIError:
    """aiohttp's own errors (no route, wrong method, body over client_max_size) in our shape."""
    template = _AIOHTTP_MESSAGES.get(exc.status)
    message = template.format(method=request.method, path=request.path) if template else exc.reason
    type_ = "server_error" if exc.status >= 500 else "invalid_request_error"
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return APIError(exc.status, message, type=type_, headers=headers)


# --- requests aiohttp refuses before any middleware runs ----------------------------------
#
# A request whose request line or headers cannot be parsed (a header over 8190 bytes, a control
# character in a header value, too many headers, a bad method) never reaches `error_middleware`:
# aiohttp answers it itself, in text/plain, after logging the exception at ERROR — and that
# exception's text is the raw offending line, e.g. `Authorization: Bearer sk-…\x01`. The apps of
# kontainers are served by `run_app` / `AppRunner` below instead, whose connection handler
# answers such requests with the OpenAI error body and logs one WARNING naming the kind of fault
# only: never the exception's text, which is request content.

_PARSE_FAULTS: tuple[tuple[type[HttpProcessingError], str, str], ...] = (
    (LineTooLong, "The request line or a header is longer than the limit of {limit} bytes.", "request_too_large"),
    (BadHttpMethod, "The HTTP method of the request is not valid.", "invalid_request"),
    (HttpProcessingError, "The HTTP request could not be parsed (malformed request line or headers).",
     "invalid_request"),
)


def parse_error(exc: BaseException | None, *, line_limit: int) -> APIError:
    """The reply to a request aiohttp could not parse, worded without any of its content."""
    for kind, message, code in _PARSE_FAULTS:
        if isinstance(exc, kind):
            status = exc.code if isinstance(exc.code, int) and 400 <= exc.code < 600 else 400
            return APIError(status, message.format(limit=line_limit), code=code)
    return server_error()


class _RequestHandler(RequestHandler):
    """aiohttp's connection handler, with its own error replies in the OpenAI shape."""

    __slots__ = ()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            log.warning("refused a malformed HTTP request from %s: %s", request.remote, type(exc).__name__)
            error = parse_error(exc, line_limit=self.max_line_size)
        else:  # something escaped the app's own error middleware (a streamed reply that broke)
            log.error("error serving a request from %s", request.remote, exc_info=exc)
            error = server_error()
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        response = error.response()
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer unparseable requests with the OpenAI error body.

    aiohttp has no public hook for its connection handler class: this swaps the class of the
    `web.Server` it builds (same layout, one method more); `tests/unit/test_http_errors.py` fails
    if an aiohttp upgrade changes that.
    """

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server


def run_app(app: web.Application, *, host: str, port: int, shutdown_timeout: float = 60.0) -> None:
    """Serve `app` until SIGTERM/SIGINT, like `web.run_app` (no access log), through `AppRunner`."""

    async def serve() -> None:
        runner = AppRunner(app, handle_signals=True, access_log=None, shutdown_timeout=shutdown_timeout)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            await asyncio.Event().wait()  # until a signal raises GracefulExit
        finally:
            await runner.cleanup()

    try:
        asyncio.run(serve())
    except (web.GracefulExit, KeyboardInterrupt):
        pass
