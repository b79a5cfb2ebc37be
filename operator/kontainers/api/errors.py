"""The OpenAI error body: every failure on the wire is `{"error": {message, type, param, code}}`.

The SDKs read `body.error` to build their exceptions; the HTTP status picks the exception class.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


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
