"""Wire objects of the container files endpoints, and the sidecar's file record they wrap."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

FileSource = Literal["user", "assistant"]


class FileRecord(BaseModel):
    """A file as the files sidecar describes it (gateway ↔ sidecar protocol)."""

    id: str = Field(description="`cfile_` + 32 hex.")
    path: str = Field(description="Absolute path inside the container, under `/mnt/data/`.")
    bytes: int = Field(ge=0, description="Size in bytes.")
    source: FileSource = Field(description="`user` for uploads, `assistant` for files the container wrote.")
    created_at: int = Field(description="Unix seconds of creation.")


class ContainerFile(FileRecord):
    """A container file, as `POST/GET /v1/containers/{id}/files…` return it."""

    object: Literal["container.file"] = "container.file"
    container_id: str = Field(description="The container holding the file.")


class FileRecordList(BaseModel):
    """The sidecar's reply to `GET /files`."""

    data: list[FileRecord]
    has_more: bool


class ContainerFileList(BaseModel):
    """One page of `GET /v1/containers/{id}/files`."""

    object: Literal["list"] = "list"
    data: list[ContainerFile]
    first_id: str | None = Field(description="Id of the first item of `data`, null when empty.")
    last_id: str | None = Field(description="Id of the last item of `data`, null when empty.")
    has_more: bool = Field(description="Whether another page follows `last_id`.")


class ContainerFileDeleted(BaseModel):
    """The reply of `DELETE /v1/containers/{id}/files/{file_id}`."""

    id: str
    object: Literal["container.file.deleted"] = "container.file.deleted"
    deleted: Literal[True] = True


class ContainerFileCreateParams(BaseModel):
    """The JSON form of `POST /v1/containers/{id}/files` (copy from the Files API)."""

    model_config = {"extra": "forbid", "strict": True}

    file_id: str = Field(description="Id of a file in the Files API to copy into the container.")
