"""What a container create or a container-file create takes from the Files API.

- `check_create_inputs`: before a Container is written, every `file_ids` entry must be a file of
  the caller's tenant (else 404 naming it) and every inline skill a valid bundle (else 400 naming
  `skills[i]`); valid bundles are kept in the store, content-addressed, for the delivery.
- `skills_spec`: the Container's `spec.skills` for the create params (pure: the bundle id is
  derived from the zip's digest, so it can be computed where the spec is built).
- `copy_into_container`: stream one stored file into a container through its sidecar.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

from kontainers.files.store import FileNotFound, TenantFile, TenantFileStore
from kontainers.api.errors import bad_request, file_not_found
from kontainers.skills.bundle import SkillBundleError, decode_inline, validate

MAX_FILE_IDS = 100  # the Container resource's limits (spec.fileIds, spec.skills)
MAX_SKILLS = 64
SKILL_BUNDLE_PREFIX = "skill-"
SKILL_BUNDLE_PURPOSE = "skills"  # internal: never listed by /v1/files (ids do not start with file-)


def skill_bundle_id(zip_bytes: bytes) -> tuple[str, str]:
    """(store id, sha256 hex) of a bundle: the same zip is stored once per tenant."""
    digest = hashlib.sha256(zip_bytes).hexdigest()
    return SKILL_BUNDLE_PREFIX + digest[:29], digest


def skills_spec(skills: Sequence[Any] | None) -> list[dict[str, Any]]:
    """`spec.skills` of the Container for the create params' `skills` (inline ones only)."""
    entries = []
    for skill in skills or []:
        if skill.type != "inline":
            continue  # refused earlier by check_create_inputs
        bundle_id, digest = skill_bundle_id(base64.b64decode(skill.source.data))
        entries.append({"type": "inline", "name": skill.name, "description": skill.description,
                        "bundle": {"fileId": bundle_id, "sha256": digest}})
    return entries


async def check_create_inputs(store: TenantFileStore, tenant: str, file_ids: Iterable[str] | None,
                              skills: Sequence[Any] | None) -> None:
    """Refuse unknown file ids and bad skills before anything is written; store good bundles."""
    if len(file_ids or []) > MAX_FILE_IDS:
        raise bad_request(f"At most {MAX_FILE_IDS} file_ids may be given.", param="file_ids", code="too_many_items")
    if len(skills or []) > MAX_SKILLS:
        raise bad_request(f"At most {MAX_SKILLS} skills may be given.", param="skills", code="too_many_items")
    for index, file_id in enumerate(file_ids or []):
        await stored_file(store, tenant, file_id, param=f"file_ids[{index}]")
    folders: dict[str, int] = {}
    bundles: list[tuple[str, bytes, str]] = []
    for index, skill in enumerate(skills or []):
        param = f"skills[{index}]"
        if skill.type == "skill_reference":
            raise bad_request(
                f"Skill references are not supported by this server: '{skill.skill_id}' cannot be resolved "
                "(there is no /v1/skills API). Send the skill inline ({\"type\": \"inline\", …}) instead.",
                param=f"{param}.skill_id", code="unsupported_parameter")
        try:
            data = decode_inline(skill.source.data)
            bundle = validate(data)
        except SkillBundleError as exc:
            raise bad_request(f"Invalid skill bundle: {exc}.", param=f"{param}.source.data",
                              code="invalid_skill_bundle") from None
        if bundle.folder in folders:
            raise bad_request(f"skills[{folders[bundle.folder]}] and {param} both unpack to the folder "
                              f"'{bundle.folder}'.", param=param, code="duplicate_skill")
        folders[bundle.folder] = index
        bundles.append((bundle.folder, data, param))
    for folder, data, _ in bundles:
        await keep_bundle(store, tenant, folder, data)


async def keep_bundle(store: TenantFileStore, tenant: str, folder: str, data: bytes) -> str:
    bundle_id, _ = skill_bundle_id(data)
    try:
        await store.stat(tenant, bundle_id)
        return bundle_id  # the same zip was stored before
    except FileNotFound:
        pass
    record = TenantFile(id=bundle_id, tenant=tenant, filename=f"{folder}.zip", purpose=SKILL_BUNDLE_PURPOSE,
                        created_at=int(time.time()))

    async def one_chunk():
        yield data

    await store.put(record, one_chunk(), max_bytes=len(data))
    return bundle_id


async def stored_file(store: TenantFileStore, tenant: str, file_id: str, *, param: str = "file_id") -> TenantFile:
    """The tenant's unexpired `file-…`, else 404 naming the id and the parameter."""
    if not isinstance(file_id, str) or not file_id.startswith("file-"):
        raise file_not_found(str(file_id), param)
    try:
        record = await store.stat(tenant, file_id)
    except FileNotFound:
        raise file_not_found(file_id, param) from None
    if record.expired():
        with contextlib.suppress(Exception):  # expired files go lazily, when next asked for
            await store.delete(tenant, file_id)
        raise file_not_found(file_id, param)
    return record


Upload = Callable[[Mapping, str, Any], Awaitable[Any]]


async def copy_into_container(store: TenantFileStore, record: TenantFile, upload: Upload, obj: Mapping,
                              name: str | None = None) -> Any:
    """Stream a stored file into the container `obj` as /mnt/data/<name>; the sidecar's record.

    `upload` is the gateway's SidecarClient.upload (obj, filename, chunks).
    """
    return await upload(obj, name or record.filename, store.read(record.tenant, record.id))
