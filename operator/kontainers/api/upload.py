"""Wire objects of the Uploads API, as openai-python's `Upload`, `UploadPart` and their params expect.

An Upload collects Parts (each at most 64 MB) and becomes one File when completed with the ordered
part ids; unfinished Uploads expire an hour after their creation (`openai.types.upload`).
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from .file import MAX_EXPIRY_SECONDS, MIN_EXPIRY_SECONDS, UPLOAD_PURPOSES, FileObject

UPLOAD_ID_PREFIX = "upload_"
PART_ID_PREFIX = "part_"
UPLOAD_EXPIRY_SECONDS = 3600  # OpenAI: an Upload expires an hour after it was created
MAX_PART_BYTES = 64 * 1024 * 1024  # OpenAI: each Part is at most 64 MB
MAX_UPLOAD_BYTES = 8 * 1024 * 1024 * 1024  # OpenAI: an Upload holds at most 8 GB in total
MAX_PARTS = 10_000  # part_ids of one complete (an 8 GB upload in parts of ~1 MB)

UploadStatus = Literal["pending", "completed", "cancelled", "expired"]
UPLOAD_STATUSES: tuple[str, ...] = ("pending", "completed", "cancelled", "expired")
"""`pending` accepts parts; `completed` made its File; `cancelled` and `expired` lost their parts."""

Purpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
assert set(Purpose.__args__) == set(UPLOAD_PURPOSES)  # type: ignore[attr-defined]


class _StoredUpload(Protocol):
    """What `Upload.of` reads of a stored upload (the store's record)."""

    id: str
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: str


# Strict like every request model: `"bytes": false` or `"seconds": "3600"` is a 400, not 0 or 3600.
_STRICT = ConfigDict(extra="forbid", strict=True)


class UploadExpiresAfter(BaseModel):
    """The expiry of the File the Upload becomes (not of the Upload itself)."""

    model_config = _STRICT

    anchor: Literal["created_at"] = Field(description="Only `created_at`.")
    seconds: int = Field(ge=MIN_EXPIRY_SECONDS, le=MAX_EXPIRY_SECONDS, description="3600–2592000.")


class UploadCreateParams(BaseModel):
    """`POST /v1/uploads`."""

    model_config = _STRICT

    # The bound is a setting (KONTAINERS_FILES_UPLOAD_MAX_BYTES, checked by the route); the
    # document shows its default.
    bytes: int = Field(ge=0, description="The number of bytes the parts will add up to.",
                       json_schema_extra={"maximum": MAX_UPLOAD_BYTES})
    filename: str = Field(min_length=1, max_length=1024, description="Name of the File it becomes.")
    mime_type: str = Field(min_length=1, max_length=255, description="MIME type of the file (kept, not checked).")
    purpose: Purpose = Field(description="The purpose of the File it becomes.")
    expires_after: UploadExpiresAfter | None = Field(default=None, description="Expiry of the File.")


class UploadCompleteParams(BaseModel):
    """`POST /v1/uploads/{upload_id}/complete`."""

    model_config = _STRICT

    part_ids: list[str] = Field(min_length=1, max_length=MAX_PARTS, description="The ordered Part ids.")
    md5: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{32}$",
                            description="Hex MD5 of the whole content; a mismatch is a 400 and no File.")


class Upload(BaseModel):
    """An Upload: accepts Parts while `pending`, carries its File once `completed`."""

    id: str = Field(description="`upload_…`.")
    object: Literal["upload"] = "upload"
    bytes: int = Field(description="The intended number of bytes.")
    created_at: int = Field(description="Unix seconds of the create.")
    expires_at: int = Field(description="Unix seconds when an unfinished Upload expires (created_at + 1 h).")
    filename: str
    purpose: str
    status: UploadStatus
    file: FileObject | None = Field(default=None, description="The File made by `complete`.")

    @classmethod
    def of(cls, record: _StoredUpload, *, status: str | None = None, file: FileObject | None = None) -> "Upload":
        return cls(id=record.id, bytes=record.bytes, created_at=record.created_at, expires_at=record.expires_at,
                   filename=record.filename, purpose=record.purpose, status=status or record.status,  # type: ignore[arg-type]
                   file=file)


class UploadPart(BaseModel):
    """One Part of an Upload."""

    id: str = Field(description="`part_…`.")
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str
