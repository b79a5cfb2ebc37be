"""What a container create or a container-file create takes from the Files API.

- `check_create_inputs`: before a Container is written, every `file_ids` entry must be a file of
  the caller's tenant (else 404 naming it), every inline skill a valid bundle (else 400 naming
  `skills[i]`) and every `skill_reference` a version of one of the tenant's skills (else 404
  naming `skills[i].skill_id` or `.version`); valid inline bundles are kept in the store,
  content-addressed, for the delivery. It answers the Container's `spec.skills`.
- `skills_spec`: the `spec.skills` entries of inline skills (pure: the bundle id is derived from
  the zip's digest, so it can be computed where the spec is built).
- `copy_into_container`: stream one stored file into a container through its sidecar.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kontainers.files.store import FileNotFound, TenantFile, TenantFileStore
from kontainers.api.errors import bad_request, file_not_found
from kontainers.gateway.keyed_locks import KeyedLocks
from kontainers.gateway.skill_refs import reference_entry, resolve_reference
from kontainers.skills.bundle import SkillBundleError, decode_inline, validate

if TYPE_CHECKING:
    from kontainers.files.skills import SkillStore

MAX_FILE_IDS = 100  # the Container resource's limits (spec.fileIds, spec.skills)
MAX_SKILLS = 64
SKILL_BUNDLE_PREFIX = "skill-"
SKILL_BUNDLE_PURPOSE = "skills"  # internal: never listed by /v1/files (ids do not start with file-)
# A bundle stored or reused this recently is never swept (gateway/store_sweep.py): it is kept
# before the Container or skill version naming it is written, so that write may still be on its way.
BUNDLE_GRACE_SECONDS = 3600
# A reuse of a bundle and the sweep's removal of it never interleave in this process.
BUNDLE_LOCKS = KeyedLocks()


def skill_bundle_id(zip_bytes: bytes) -> tuple[str, str]:
    """(store id, sha256 hex) of a bundle: the same zip is stored once per tenant."""
    digest = hashlib.sha256(zip_bytes).hexdigest()
    return bundle_id_of(digest), digest


def bundle_id_of(digest: str) -> str:
    return SKILL_BUNDLE_PREFIX + digest[:29]


def skills_spec(skills: Sequence[Any] | None) -> list[dict[str, Any]]:
    """`spec.skills` entries of the create params' inline skills (references need the skill store:
    `check_create_inputs` resolves them)."""
    entries = []
    for skill in skills or []:
        if skill.type != "inline":
            continue  # refused earlier by check_create_inputs
        bundle_id, digest = skill_bundle_id(base64.b64decode(skill.source.data))
        entries.append({"type": "inline", "name": skill.name, "description": skill.description,
                        "bundle": {"fileId": bundle_id, "sha256": digest}})
    return entries


async def check_create_inputs(store: TenantFileStore, tenant: str, file_ids: Iterable[str] | None,
                              skills: Sequence[Any] | None, *,
                              skill_store: "SkillStore | None" = None) -> list[dict[str, Any]]:
    """Refuse unknown file ids and bad skills before anything is written; store good bundles.

    Returns the Container's `spec.skills`, in the order given: inline skills by their kept
    bundle, references by the bundle of the version they resolve to (pinned, so the container
    keeps it whatever later happens to the skill).
    """
    if len(file_ids or []) > MAX_FILE_IDS:
        raise bad_request(f"At most {MAX_FILE_IDS} file_ids may be given.", param="file_ids", code="too_many_items")
    if len(skills or []) > MAX_SKILLS:
        raise bad_request(f"At most {MAX_SKILLS} skills may be given.", param="skills", code="too_many_items")
    for index, file_id in enumerate(file_ids or []):
        await stored_file(store, tenant, file_id, param=f"file_ids[{index}]")
    folders: dict[str, int] = {}
    bundles: list[tuple[str, bytes, str]] = []
    entries: list[dict[str, Any]] = []
    inline_entries = iter(skills_spec(skills))
    for index, skill in enumerate(skills or []):
        param = f"skills[{index}]"
        if skill.type == "skill_reference":
            skill_id, version = await resolve_reference(skill_store, tenant, skill, param)
            folder = version.folder
            entries.append(reference_entry(skill_id, version))
        else:
            try:
                data = decode_inline(skill.source.data)
                bundle = validate(data)
            except SkillBundleError as exc:
                raise bad_request(f"Invalid skill bundle: {exc}.", param=f"{param}.source.data",
                                  code="invalid_skill_bundle") from None
            folder = bundle.folder
            bundles.append((bundle.folder, data, param))
            entries.append(next(inline_entries))
        if folder in folders:
            raise bad_request(f"skills[{folders[folder]}] and {param} both unpack to the folder "
                              f"'{folder}'.", param=param, code="duplicate_skill")
        folders[folder] = index
    for folder, data, _ in bundles:
        await keep_bundle(store, tenant, folder, data)
    return entries


async def keep_bundle(store: TenantFileStore, tenant: str, folder: str, data: bytes) -> str:
    bundle_id, digest = skill_bundle_id(data)

    async def one_chunk():
        yield data

    return await keep_bundle_stream(store, tenant, folder, digest, one_chunk(), len(data))


async def keep_bundle_stream(store: TenantFileStore, tenant: str, folder: str, digest: str,
                             chunks: AsyncIterable[bytes], size: int) -> str:
    """Store a bundle of known digest as the tenant's `skill-…` file, unless the same zip is there.

    Either way the bundle is fresh afterwards (`created_at` within the last half grace period),
    so the sweep leaves it to the create now naming it.
    """
    bundle_id = bundle_id_of(digest)
    async with BUNDLE_LOCKS(tenant, bundle_id):
        now = int(time.time())
        try:
            found = await store.stat(tenant, bundle_id)
        except FileNotFound:
            found = None
        if found is not None:  # the same zip was stored before
            if found.created_at < now - BUNDLE_GRACE_SECONDS // 2:
                await store.rewrite_record(replace(found, created_at=now))
            return bundle_id
        record = TenantFile(id=bundle_id, tenant=tenant, filename=f"{folder}.zip", purpose=SKILL_BUNDLE_PURPOSE,
                            created_at=now)
        await store.put(record, chunks, max_bytes=size)
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
