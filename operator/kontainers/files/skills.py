"""Storage of the Skills API: one JSON record per skill, beside the file store, no HTTP.

A skill's record holds all its versions (a handful of fields each), so every change — a new
version, a new default, a deleted version — is one atomic write of one record:

- directory: `<files root>/.skills/<tenant>/<skill id>.json` (written to a temp file, fsynced,
  renamed);
- S3: `<prefix>.skills/<tenant>/<skill id>.json` (a PutObject is atomic).

Tenants are DNS labels, so `.skills` is never a tenant's directory or key prefix and the file
store never lists these names. The bundles themselves (the zips) are not here: each version names
a content-addressed `skill-<sha256 prefix>` file of the tenant in the file store, the same one an
inline skill of the same zip gets. Containers pin that file, so deleting a skill or a version
never takes a bundle from a container that uses it (a recreated pod gets it again).
"""

from __future__ import annotations

import abc
import asyncio
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kontainers.files.fsstore import unlink_quietly, write_atomically
from kontainers.files.store import check_tenant, new_file_id

if TYPE_CHECKING:
    from kontainers.files.store import TenantFileStore

SKILL_PREFIX = "skill_"
VERSION_PREFIX = "skillver_"
SKILLS_DIR = ".skills"
RECORD_SUFFIX = ".json"
_SKILL_RE = re.compile(r"^skill_[0-9a-f]{29}$")


class SkillNotFound(Exception):
    def __init__(self, skill_id: str) -> None:
        super().__init__(f"No such Skill object: {skill_id}")
        self.skill_id = skill_id


def _time_id(prefix: str, after: str | None = None) -> str:
    """The file store's time-ordered id (`new_file_id`), past `after` even if the clock went back."""
    new = new_file_id(prefix)
    if after is not None and new <= after:
        new = f"{prefix}{int(after[len(prefix):len(prefix) + 13], 16) + 1:013x}{secrets.token_hex(8)}"
    return new


def new_skill_id() -> str:
    return _time_id(SKILL_PREFIX)


def is_skill_id(skill_id: object) -> bool:
    return isinstance(skill_id, str) and bool(_SKILL_RE.match(skill_id))


@dataclass(frozen=True)
class VersionRecord:
    """One immutable version: where its bundle is and what its SKILL.md says."""

    id: str
    version: int
    name: str
    description: str
    folder: str  # the zip's top-level folder: /mnt/skills/<folder> in a container
    created_at: int
    bundle_id: str  # the `skill-…` file of the tenant in the file store
    sha256: str
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "name": self.name, "description": self.description,
                "folder": self.folder, "created_at": self.created_at, "bundle_id": self.bundle_id,
                "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "VersionRecord":
        return cls(id=str(data["id"]), version=int(data["version"]), name=str(data["name"]),
                   description=str(data["description"]), folder=str(data["folder"]),
                   created_at=int(data["created_at"]), bundle_id=str(data["bundle_id"]),
                   sha256=str(data["sha256"]), bytes=int(data["bytes"]))


@dataclass(frozen=True)
class SkillRecord:
    """A skill and all its versions (ascending). Version numbers are never reused."""

    id: str
    tenant: str
    created_at: int
    default_version: int
    versions: tuple[VersionRecord, ...] = field(default=())
    last_assigned: int = 0  # the highest version number ever given (deleted ones count)

    @property
    def latest_version(self) -> int:
        return max((v.version for v in self.versions), default=0)

    def version(self, number: int) -> VersionRecord | None:
        return next((v for v in self.versions if v.version == number), None)

    def with_version(self, *, name: str, description: str, folder: str, bundle_id: str, sha256: str,
                     size: int, make_default: bool) -> tuple["SkillRecord", VersionRecord]:
        """This skill with one more version (numbered after every version it ever had)."""
        number = self.last_assigned + 1
        last_id = max((v.id for v in self.versions), default=None)
        added = VersionRecord(id=_time_id(VERSION_PREFIX, last_id), version=number, name=name,
                              description=description, folder=folder, created_at=int(time.time()),
                              bundle_id=bundle_id, sha256=sha256, bytes=size)
        updated = replace(self, versions=(*self.versions, added), last_assigned=number,
                          default_version=number if make_default or not self.versions else self.default_version)
        return updated, added

    def without_version(self, number: int) -> "SkillRecord":
        return replace(self, versions=tuple(v for v in self.versions if v.version != number))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "created_at": self.created_at, "default_version": self.default_version,
                "last_assigned": self.last_assigned, "versions": [v.to_json() for v in self.versions]}

    @classmethod
    def from_json(cls, tenant: str, data: dict[str, Any]) -> "SkillRecord":
        return cls(id=str(data["id"]), tenant=tenant, created_at=int(data["created_at"]),
                   default_version=int(data["default_version"]), last_assigned=int(data["last_assigned"]),
                   versions=tuple(VersionRecord.from_json(v) for v in data.get("versions") or ()))


def new_skill(tenant: str) -> SkillRecord:
    """A skill with no version yet (its first version becomes the default)."""
    return SkillRecord(id=new_skill_id(), tenant=check_tenant(tenant), created_at=int(time.time()), default_version=0)


class SkillStore(abc.ABC):
    """Skill records of every tenant. Backends implement the abstract methods."""

    @abc.abstractmethod
    async def save(self, record: SkillRecord) -> None:
        """Write (or replace) a skill's record."""

    @abc.abstractmethod
    async def get(self, tenant: str, skill_id: str) -> SkillRecord:
        """The record, or SkillNotFound (also for another tenant's ids, or malformed ones)."""

    @abc.abstractmethod
    async def delete(self, tenant: str, skill_id: str) -> bool:
        """Remove a skill's record; False when there was none."""

    @abc.abstractmethod
    async def ids(self, tenant: str) -> list[str]:
        """Every skill id of a tenant, ascending (= by creation time)."""

    async def start(self) -> None:
        """Prepare the backend. Called once before use."""

    async def close(self) -> None:
        """Release what start took (the S3 client belongs to the file store)."""

    async def records(self, tenant: str, skill_ids: list[str]) -> list[SkillRecord]:
        """The records of these ids, in that order; ones deleted meanwhile are left out."""
        async def one(skill_id: str) -> SkillRecord | None:
            try:
                return await self.get(tenant, skill_id)
            except SkillNotFound:
                return None

        return [r for r in await asyncio.gather(*(one(i) for i in skill_ids)) if r is not None]


def skill_store_for(files: "TenantFileStore") -> SkillStore:
    """The skill store living beside a file store, on the same backend."""
    from kontainers.files.fsstore import FilesystemStore

    if isinstance(files, FilesystemStore):
        return FilesystemSkillStore(files.root / SKILLS_DIR)
    from kontainers.files.s3store import S3Store

    if isinstance(files, S3Store):
        return S3SkillStore(files)
    raise TypeError(f"no skill store for {type(files).__name__}")


def _checked(tenant: str, skill_id: str) -> None:
    """Names become path elements and keys: only our own id shapes pass (no `..`, no `/`)."""
    check_tenant(tenant)
    if not is_skill_id(skill_id):
        raise SkillNotFound(skill_id)


class FilesystemSkillStore(SkillStore):
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, tenant: str, skill_id: str) -> Path:
        _checked(tenant, skill_id)
        return self.root / tenant / (skill_id + RECORD_SUFFIX)

    async def start(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def save(self, record: SkillRecord) -> None:
        path = self._path(record.tenant, record.id)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(write_atomically, path, json.dumps(record.to_json()).encode())

    async def get(self, tenant: str, skill_id: str) -> SkillRecord:
        try:
            raw = await asyncio.to_thread(self._path(tenant, skill_id).read_bytes)
        except FileNotFoundError:
            raise SkillNotFound(skill_id) from None
        return SkillRecord.from_json(tenant, json.loads(raw))

    async def delete(self, tenant: str, skill_id: str) -> bool:
        try:
            path = self._path(tenant, skill_id)
        except SkillNotFound:
            return False
        return await asyncio.to_thread(unlink_quietly, path)

    async def ids(self, tenant: str) -> list[str]:
        directory = self.root / check_tenant(tenant)
        try:
            names = await asyncio.to_thread(os.listdir, directory)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(RECORD_SUFFIX)] for n in names
                      if n.endswith(RECORD_SUFFIX) and is_skill_id(n[: -len(RECORD_SUFFIX)]))


class S3SkillStore(SkillStore):
    """Keys `<prefix>.skills/<tenant>/<skill id>.json` in the file store's bucket, with its client."""

    def __init__(self, files: Any) -> None:
        self._files = files  # an S3Store: its bucket, prefix and (once started) client

    @property
    def _client(self) -> Any:
        return self._files._client  # the file store's one connection pool, opened by its start()

    @property
    def _bucket(self) -> str:
        return self._files.bucket

    def _base(self, tenant: str) -> str:
        return f"{self._files.prefix}{SKILLS_DIR}/{check_tenant(tenant)}/"

    def _key(self, tenant: str, skill_id: str) -> str:
        _checked(tenant, skill_id)
        return self._base(tenant) + skill_id + RECORD_SUFFIX

    async def save(self, record: SkillRecord) -> None:
        await self._client.put_object(Bucket=self._bucket, Key=self._key(record.tenant, record.id),
                                      Body=json.dumps(record.to_json()).encode(), ContentType="application/json")

    async def get(self, tenant: str, skill_id: str) -> SkillRecord:
        from botocore.exceptions import ClientError

        try:
            reply = await self._client.get_object(Bucket=self._bucket, Key=self._key(tenant, skill_id))
        except ClientError as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                raise SkillNotFound(skill_id) from None
            raise
        async with reply["Body"] as body:
            raw = await body.read()
        return SkillRecord.from_json(tenant, json.loads(raw))

    async def delete(self, tenant: str, skill_id: str) -> bool:
        try:
            await self.get(tenant, skill_id)  # S3 deletes answer 204 for absent keys too
        except SkillNotFound:
            return False
        await self._client.delete_object(Bucket=self._bucket, Key=self._key(tenant, skill_id))
        return True

    async def ids(self, tenant: str) -> list[str]:
        base = self._base(tenant)
        found = []
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=base):
            for item in page.get("Contents", []):
                name = item["Key"][len(base):]
                if name.endswith(RECORD_SUFFIX) and is_skill_id(name[: -len(RECORD_SUFFIX)]):
                    found.append(name[: -len(RECORD_SUFFIX)])
        return sorted(found)


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


__all__ = [
    "FilesystemSkillStore", "S3SkillStore", "SkillNotFound", "SkillRecord", "SkillStore", "VersionRecord",
    "is_skill_id", "new_skill", "new_skill_id", "skill_store_for",
]
