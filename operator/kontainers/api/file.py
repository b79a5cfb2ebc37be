"""Wire objects of the Files API, as openai-python's `FileObject`, `FileDeleted` and list page expect."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, Field


class _Stored(Protocol):
    """What `FileObject.of` reads of a stored file (the Files API store's record)."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    expires_at: int | None

# What a client may upload with (the SDK's FilePurpose); the *_output purposes are OpenAI's own.
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MIN_EXPIRY_SECONDS = 3600
MAX_EXPIRY_SECONDS = 30 * 24 * 3600
BATCH_DEFAULT_EXPIRY_SECONDS = 30 * 24 * 3600  # as OpenAI: batch files expire after 30 days by default


class FileObject(BaseModel):
    """A stored file."""

    id: str = Field(description="`file-…`; usable as `file_ids` of a container and `file_id` of container files.")
    object: Literal["file"] = "file"
    bytes: int = Field(description="Size in bytes.")
    created_at: int = Field(description="Unix seconds of the upload.")
    filename: str = Field(description="Name given at upload (the name it gets inside a container).")
    purpose: str = Field(description="The purpose given at upload.")
    status: Literal["uploaded", "processed", "error"] = Field(
        default="processed", description="Deprecated by OpenAI; always `processed` once stored.")
    expires_at: int | None = Field(default=None, description="Unix seconds when the file expires, if it does.")
    status_details: str | None = None

    @classmethod
    def of(cls, record: _Stored) -> "FileObject":
        return cls(id=record.id, bytes=record.bytes, created_at=record.created_at, filename=record.filename,
                   purpose=record.purpose, expires_at=record.expires_at)


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool
