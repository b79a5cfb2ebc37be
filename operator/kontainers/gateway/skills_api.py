"""`/v1/skills`: the OpenAI Skills API, mounted with `setup(app)` after files_api.

- `POST /v1/skills` (multipart `files`: one zip, or `files[]`: the files of one folder) → a `skill`
  whose version 1 is that bundle, checked exactly as an inline skill's zip;
- `GET /v1/skills` (cursor pages by creation), `GET|DELETE /v1/skills/{id}`,
  `POST /v1/skills/{id}` `{default_version}`, `GET /v1/skills/{id}/content` (the default version's zip);
- `POST|GET /v1/skills/{id}/versions` (create with optional `default`; list by version number),
  `GET|DELETE /v1/skills/{id}/versions/{version}`, `GET …/{version}/content`.

Each version's zip is the tenant's content-addressed `skill-…` file in the file store (the one an
inline skill of that zip gets too), so a container made with a `skill_reference` pins the very
bundle and keeps it after the skill or version is deleted. One skill's changes are serialised by
a per-skill lock in this process; two gateway replicas adding versions to one skill at the same
instant may both number theirs alike (the later write wins).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import quote

from aiohttp import web

from kontainers.api.errors import APIError, bad_request
from kontainers.api.pagination import ListParams, UnknownCursor, paginate
from kontainers.api.skill import (
    DeletedSkill,
    DeletedSkillVersion,
    Skill,
    SkillUpdateParams,
    SkillVersion,
    version_number,
)
from kontainers.files.skills import (
    SkillNotFound,
    SkillRecord,
    SkillStore,
    VersionRecord,
    is_skill_id,
    new_skill,
    skill_store_for,
)
from kontainers.files.store import FileNotFound
from kontainers.gateway.auth import TENANT
from kontainers.gateway.bodies import read_json_object
from kontainers.gateway.file_inputs import keep_bundle_stream
from kontainers.gateway.files_api import FILE_STORE
from kontainers.gateway.keyed_locks import KeyedLocks
from kontainers.gateway.skill_bundles import ReceivedBundle, receive_bundle
from kontainers.gateway.skill_refs import pick_version, skill_not_found
from kontainers.observability import FILE_BYTES

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SKILL_STORE = web.AppKey("skill_store", SkillStore)
SKILL_LOCKS = web.AppKey("skill_locks", KeyedLocks)
MAX_VERSIONS = 1000  # per skill: all of them live in one record
_VERSION_ID = re.compile(r"^skillver_[0-9a-f]{29}$")


def setup(app: web.Application) -> None:
    """Mount /v1/skills beside /v1/files (whose store and lifecycle it shares)."""
    app[SKILL_STORE] = skill_store_for(app[FILE_STORE])
    app[SKILL_LOCKS] = KeyedLocks()
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_routes(routes)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start the store after the file store (it may share its client)."""
    await app[SKILL_STORE].start()
    yield
    await app[SKILL_STORE].close()


async def _record(request: web.Request) -> SkillRecord:
    skill_id = request.match_info["skill_id"]
    try:
        return await request.app[SKILL_STORE].get(request[TENANT].namespace, skill_id)
    except SkillNotFound:
        raise skill_not_found(skill_id) from None


def _version(record: SkillRecord, request: web.Request) -> VersionRecord:
    return pick_version(record, request.match_info["version"])


async def _keep(request: web.Request, received: ReceivedBundle) -> str:
    """Store the bundle as the tenant's content-addressed `skill-…` file; its id."""
    return await keep_bundle_stream(request.app[FILE_STORE], request[TENANT].namespace, received.bundle.folder,
                                    received.sha256, received.chunks(), received.bytes)


def _add_version(record: SkillRecord, received: ReceivedBundle, bundle_id: str, *,
                 make_default: bool) -> tuple[SkillRecord, VersionRecord]:
    if len(record.versions) >= MAX_VERSIONS:
        raise bad_request(f"A skill holds at most {MAX_VERSIONS} versions; delete some first.", param="files",
                          code="too_many_items")
    return record.with_version(name=received.manifest.name, description=received.manifest.description,
                               folder=received.bundle.folder, bundle_id=bundle_id, sha256=received.sha256,
                               size=received.bytes, make_default=make_default)


def _json(model) -> web.Response:  # type: ignore[no-untyped-def]
    return web.json_response(model.model_dump(mode="json"))


@routes.post("/v1/skills")
async def create_skill(request: web.Request) -> web.Response:
    received = await receive_bundle(request)
    try:
        bundle_id = await _keep(request, received)
    finally:
        received.close()
    record, version = _add_version(new_skill(request[TENANT].namespace), received, bundle_id, make_default=True)
    await request.app[SKILL_STORE].save(record)
    log.info("skill created", extra={"skill_id": record.id, "tenant": record.tenant, "bytes": version.bytes})
    return _json(Skill.of(record))


def _list_params(request: web.Request, valid_cursor) -> ListParams:  # type: ignore[no-untyped-def]
    params = ListParams.from_query(request.query)
    if params.after is not None and not valid_cursor(params.after):
        raise bad_request(f"Invalid 'after': {params.after!r} is not an id of this list.", param="after",
                          code="invalid_value")
    return params


@routes.get("/v1/skills")
async def list_skills(request: web.Request) -> web.Response:
    params = _list_params(request, is_skill_id)
    store, tenant = request.app[SKILL_STORE], request[TENANT].namespace
    ids = await store.ids(tenant)  # ids sort by creation time: a page needs only its own records
    if params.order == "desc":
        ids.reverse()
    if params.after:
        ids = [i for i in ids if (i < params.after if params.order == "desc" else i > params.after)]
    found: list[SkillRecord] = []
    position = 0
    while position < len(ids) and len(found) <= params.limit:
        batch = ids[position:position + params.limit + 1 - len(found)]
        position += len(batch)
        found += await store.records(tenant, batch)
    data = [Skill.of(r) for r in found[:params.limit]]
    return web.json_response({"object": "list", "data": [s.model_dump(mode="json") for s in data],
                              "first_id": data[0].id if data else None, "last_id": data[-1].id if data else None,
                              "has_more": len(found) > params.limit})


@routes.get("/v1/skills/{skill_id}")
async def retrieve_skill(request: web.Request) -> web.Response:
    return _json(Skill.of(await _record(request)))


@routes.post("/v1/skills/{skill_id}")
async def update_skill(request: web.Request) -> web.Response:
    params = SkillUpdateParams.model_validate(await read_json_object(request))
    tenant, skill_id = request[TENANT].namespace, request.match_info["skill_id"]
    async with request.app[SKILL_LOCKS](tenant, skill_id):
        record = await _record(request)
        number = version_number(params.default_version)
        if number is None or record.version(number) is None:
            raise bad_request(f"Invalid value for 'default_version': skill {record.id} has no version "
                              f"{params.default_version!r}.", param="default_version", code="invalid_value")
        if number != record.default_version:
            record = replace(record, default_version=number)
            await request.app[SKILL_STORE].save(record)
    return _json(Skill.of(record))


@routes.delete("/v1/skills/{skill_id}")
async def delete_skill(request: web.Request) -> web.Response:
    tenant, skill_id = request[TENANT].namespace, request.match_info["skill_id"]
    async with request.app[SKILL_LOCKS](tenant, skill_id):
        record = await _record(request)
        if not await request.app[SKILL_STORE].delete(tenant, record.id):
            raise skill_not_found(record.id)
    log.info("skill deleted", extra={"skill_id": record.id, "tenant": tenant})
    return _json(DeletedSkill(id=record.id))


@routes.get("/v1/skills/{skill_id}/content")
async def skill_content(request: web.Request) -> web.StreamResponse:
    record = await _record(request)
    version = record.version(record.default_version)
    assert version is not None  # the default version cannot be deleted
    return await _stream_bundle(request, version)


@routes.post("/v1/skills/{skill_id}/versions")
async def create_version(request: web.Request) -> web.Response:
    await _record(request)  # an unknown skill is a 404 before its body is read
    received = await receive_bundle(request, allow_default=True)
    try:
        bundle_id = await _keep(request, received)
    finally:
        received.close()
    tenant, skill_id = request[TENANT].namespace, request.match_info["skill_id"]
    async with request.app[SKILL_LOCKS](tenant, skill_id):
        record = await _record(request)  # again, under the lock: versions added meanwhile count
        record, version = _add_version(record, received, bundle_id, make_default=bool(received.default))
        await request.app[SKILL_STORE].save(record)
    log.info("skill version created", extra={"skill_id": record.id, "tenant": tenant, "version": version.version})
    return _json(SkillVersion.of(record.id, version))


@routes.get("/v1/skills/{skill_id}/versions")
async def list_versions(request: web.Request) -> web.Response:
    params = _list_params(request, lambda after: bool(_VERSION_ID.match(after)))
    record = await _record(request)
    # Version ids sort like their numbers (both follow creation), so a deleted version's id is
    # still a cursor.
    try:
        page = paginate(record.versions, params=params, id_of=lambda v: v.id, key_of=lambda v: (v.id,),
                        after_key=(params.after,) if params.after else None)
    except UnknownCursor:  # pragma: no cover - after_key is always given
        raise bad_request(f"Invalid 'after': {params.after!r}.", param="after", code="invalid_value") from None
    return web.json_response(page.envelope(lambda v: SkillVersion.of(record.id, v).model_dump(mode="json")))


@routes.get("/v1/skills/{skill_id}/versions/{version}")
async def retrieve_version(request: web.Request) -> web.Response:
    record = await _record(request)
    return _json(SkillVersion.of(record.id, _version(record, request)))


@routes.delete("/v1/skills/{skill_id}/versions/{version}")
async def delete_version(request: web.Request) -> web.Response:
    tenant, skill_id = request[TENANT].namespace, request.match_info["skill_id"]
    async with request.app[SKILL_LOCKS](tenant, skill_id):
        record = await _record(request)
        version = _version(record, request)
        if version.version == record.default_version:
            raise bad_request(f"Version {version.version} is the default version of skill {record.id}: set another "
                              "default_version first, or delete the skill.", param="version",
                              code="invalid_value")
        await request.app[SKILL_STORE].save(record.without_version(version.version))
    log.info("skill version deleted", extra={"skill_id": record.id, "tenant": tenant, "version": version.version})
    return _json(DeletedSkillVersion(id=version.id, version=str(version.version)))


@routes.get("/v1/skills/{skill_id}/versions/{version}/content")
async def version_content(request: web.Request) -> web.StreamResponse:
    record = await _record(request)
    return await _stream_bundle(request, _version(record, request))


async def _stream_bundle(request: web.Request, version: VersionRecord) -> web.StreamResponse:
    store, tenant = request.app[FILE_STORE], request[TENANT].namespace
    chunks = store.read(tenant, version.bundle_id).__aiter__()
    try:
        first = await anext(chunks, b"")
    except FileNotFound:
        raise APIError(404, f"The bundle of version {version.version} is gone from the store.",
                       code="not_found") from None
    filename = f"{version.folder}.zip"
    response = web.StreamResponse(headers={
        "Content-Type": "application/zip",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
    })
    response.content_length = version.bytes
    await response.prepare(request)
    chunk = first
    while chunk:
        await response.write(chunk)
        FILE_BYTES.labels("download").inc(len(chunk))
        chunk = await anext(chunks, b"")
    await response.write_eof()
    return response
