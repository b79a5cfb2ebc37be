"""The file store's sweep: what nothing can use any more leaves the store. Mounted with `setup(app)`.

Once at start and every `FilesSettings.store_sweep_seconds` (300 s), over every tenant of the store:

- **expired files**: a `file-…` past its `expires_at` is hidden from the API at once; here its bytes go;
- **skill bundles**: a `skill-…` file that no Container of the watch cache (`spec.skills[i].bundle`)
  and no version of the tenant's skills names is removed once it is older than
  `BUNDLE_GRACE_SECONDS` (1 h). A bundle is kept (or, when reused, made fresh) before the Container
  or skill version naming it is written, so a create in flight always finds it. Bundles are judged
  only against a watch cache that has listed, and only for tenants whose namespace this gateway
  watches (another gateway may serve the rest from the same store).

Replicas may sweep at once: every delete is idempotent (gone already = nothing to do), and each
counts only what it removed itself. In this process a bundle's reuse and its removal are
serialised (`BUNDLE_LOCKS`); across replicas, a reuse in the moment between another replica's
last check and its delete is not covered (the delivery then reports the bundle gone).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

from aiohttp import web

from kontainers.files.skills import SkillStore
from kontainers.files.store import FILE_ID_PREFIX, FileNotFound, TenantFileStore
from kontainers.gateway.cache import ContainerCache
from kontainers.gateway.file_inputs import BUNDLE_GRACE_SECONDS, BUNDLE_LOCKS, SKILL_BUNDLE_PREFIX
from kontainers.gateway.files_api import FILE_STORE, FILES_SETTINGS
from kontainers.gateway.periodic import repeat, running
from kontainers.gateway.skills_api import SKILL_STORE
from kontainers.gateway.state import CLUSTER, SETTINGS
from kontainers.observability import STORE_SWEPT

log = logging.getLogger(__name__)

STARTUP_SYNC_WAIT = 60.0  # the first round waits this long for the watch cache to list
_BATCH = 100  # records fetched at once (on S3 each uncached one is a HEAD)


def setup(app: web.Application) -> None:
    """Run the sweep while the app runs (after the file and skill stores have started)."""
    app.cleanup_ctx.append(_lifecycle)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    cache = app[CLUSTER].containers
    settings = app[FILES_SETTINGS]

    async def sweeps() -> None:
        await cache.wait_for(lambda: cache.synced, STARTUP_SYNC_WAIT)
        await repeat(lambda: _sweep(app), lambda: settings.store_sweep_seconds, what="file store sweep")

    async with running(sweeps(), "file store sweep"):
        yield


async def _sweep(app: web.Application) -> None:
    started = time.monotonic()
    counts = await sweep_store(app[FILE_STORE], app.get(SKILL_STORE), app[CLUSTER].containers,
                               namespaces=app[SETTINGS].watch_namespaces)
    log.info("file store swept", extra={**counts, "seconds": round(time.monotonic() - started, 3)})


def referenced_bundles(containers: Iterable[Mapping]) -> dict[str, set[str]]:
    """Namespace (= tenant) → the bundle file ids its Containers' `spec.skills` name."""
    found: dict[str, set[str]] = {}
    for obj in containers:
        ids = found.setdefault(obj["metadata"]["namespace"], set())
        for skill in (obj.get("spec") or {}).get("skills") or []:
            if file_id := (skill.get("bundle") or {}).get("fileId"):
                ids.add(file_id)
    return found


async def sweep_store(store: TenantFileStore, skills: SkillStore | None, cache: ContainerCache, *,
                      namespaces: Sequence[str] = (), now: float | None = None,
                      grace: float = BUNDLE_GRACE_SECONDS) -> dict[str, int]:
    """One round over every tenant; how many expired files and bundles this call removed.

    `namespaces`: the watched ones (empty = all); bundles of other tenants are left alone.
    """
    now = time.time() if now is None else now
    counts = {"tenants": 0, "expired_removed": 0, "bundles_removed": 0, "bundles_kept": 0,
              "cache_synced": int(cache.synced)}
    for tenant in await store.tenants():
        counts["tenants"] += 1
        try:
            ids = await store.ids(tenant)
            counts["expired_removed"] += await _remove_expired(store, tenant, ids, now)
            if cache.synced and (not namespaces or tenant in namespaces):
                removed, kept = await _remove_unused_bundles(store, skills, cache, tenant, ids, now - grace)
                counts["bundles_removed"] += removed
                counts["bundles_kept"] += kept
        except Exception:  # one tenant's trouble (a bad record, a flaky backend) must not stop the others
            log.exception("sweeping the files of tenant %s failed", tenant)
    STORE_SWEPT.labels("expired").inc(counts["expired_removed"])
    STORE_SWEPT.labels("bundle").inc(counts["bundles_removed"])
    return counts


async def _remove_expired(store: TenantFileStore, tenant: str, ids: list[str], now: float) -> int:
    files = [i for i in ids if i.startswith(FILE_ID_PREFIX)]
    removed = 0
    for start in range(0, len(files), _BATCH):
        batch = files[start:start + _BATCH]
        records = await asyncio.gather(*(store.record(tenant, i) for i in batch), return_exceptions=True)
        for record in records:
            if isinstance(record, FileNotFound):
                continue  # deleted meanwhile
            if isinstance(record, BaseException):
                raise record
            if record.expired(now) and await store.delete(tenant, record.id):
                removed += 1
    return removed


async def _remove_unused_bundles(store: TenantFileStore, skills: SkillStore | None, cache: ContainerCache,
                                 tenant: str, ids: list[str], cutoff: float) -> tuple[int, int]:
    """(removed, kept) of the tenant's bundles; kept: in use, or too fresh to judge."""
    bundles = [i for i in ids if i.startswith(SKILL_BUNDLE_PREFIX)]
    if not bundles:
        return 0, 0
    in_use = referenced_bundles(cache.in_namespace(tenant)).get(tenant, set())
    if skills is not None:
        for record in await skills.records(tenant, await skills.ids(tenant)):
            in_use.update(version.bundle_id for version in record.versions)
    removed = 0
    for bundle_id in bundles:
        if bundle_id in in_use:
            continue
        async with BUNDLE_LOCKS(tenant, bundle_id):
            try:
                record = await store.stat(tenant, bundle_id)  # never the cache: a reuse refreshes it
            except FileNotFound:
                continue
            if record.created_at >= cutoff:
                continue
            # A Container written since the references were read still counts.
            if bundle_id in referenced_bundles(cache.in_namespace(tenant)).get(tenant, set()):
                continue
            if await store.delete(tenant, bundle_id):
                removed += 1
    return removed, len(bundles) - removed
