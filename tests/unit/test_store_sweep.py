"""The file store's sweep (gateway/store_sweep.py): expired files and skill bundles nothing names leave
the store; bundles a Container or a skill version names, or too fresh to judge, stay.

The gateway app runs on loopback (kube faked) with the official openai SDK; every case runs on both
store backends: a directory and a real S3-compatible server (versitygw).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import time
from dataclasses import replace
from pathlib import Path

import openai
import pytest
from aiohttp.test_utils import TestServer

from fixtures.gateway_fake import FakeCluster, gateway_test_settings, run_immediately
from fixtures.s3 import files_settings_for
from kontainers.files.store import FileNotFound, TenantFile, TenantFileStore, new_file_id
from kontainers.gateway.app import create_app
from kontainers.gateway.file_inputs import BUNDLE_GRACE_SECONDS, keep_bundle, skill_bundle_id
from kontainers.gateway.files_api import FILE_STORE
from kontainers.gateway.skills_api import SKILL_STORE
from kontainers.gateway.store_sweep import sweep_store
from kontainers.settings import FilesSettings
from test_skills_api import bundle as fresh_bundle

KEY = "sk-sweep-a"
# A zip records the time it was made: one zip per folder, so its bundle id stays the same.
bundle = functools.cache(fresh_bundle)
TENANT = "tenant-a"


@pytest.fixture(params=["filesystem", "s3"])
def files_settings(request: pytest.FixtureRequest, tmp_path: Path) -> FilesSettings:
    # Long interval: the cases sweep by hand, after the one round at start.
    return files_settings_for(request, request.param, tmp_path, store_sweep_seconds=3600)


async def start(files_settings: FilesSettings, **gateway: object) -> tuple[TestServer, FakeCluster]:
    cluster = FakeCluster()
    cluster.add_key(KEY, TENANT)
    cluster.operator = run_immediately(cluster)
    server = TestServer(create_app(gateway_test_settings(**gateway), cluster=cluster, files=files_settings),
                        host="127.0.0.1")
    await server.start_server()
    return server, cluster


class SweepLog(logging.Handler):
    """Counts the sweep's one line per round."""

    def __init__(self) -> None:
        super().__init__()
        self.rounds: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "file store swept":
            self.rounds.append(record)

    async def wait(self, rounds: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.rounds) < rounds and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(self.rounds) >= rounds


@pytest.fixture
def sweep_log():
    logger = logging.getLogger("kontainers.gateway.store_sweep")
    handler, level = SweepLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
async def env(files_settings: FilesSettings, sweep_log: SweepLog):
    server, cluster = await start(files_settings)
    await sweep_log.wait(1)  # the round at start is over: the cases below sweep by hand
    yield server, cluster
    await server.close()


def sdk(server: TestServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=KEY, max_retries=0)


def store_of(server: TestServer) -> TenantFileStore:
    return server.app[FILE_STORE]


async def sweep(server: TestServer, cluster: FakeCluster, **options: object) -> dict[str, int]:
    return await sweep_store(store_of(server), server.app[SKILL_STORE], cluster.containers, **options)


async def exists(store: TenantFileStore, file_id: str) -> bool:
    try:
        await store.stat(TENANT, file_id)
    except FileNotFound:
        return False
    return file_id in await store.ids(TENANT)


async def age(store: TenantFileStore, file_id: str, seconds: float = BUNDLE_GRACE_SECONDS + 60) -> None:
    """Make a stored file look `seconds` old (as if kept that long ago)."""
    record = await store.stat(TENANT, file_id)
    await store.rewrite_record(replace(record, created_at=int(time.time() - seconds)))


def inline(folder: str) -> dict:
    return {"type": "inline", "name": folder, "description": folder,
            "source": {"type": "base64", "media_type": "application/zip",
                       "data": base64.b64encode(bundle(folder)).decode()}}


def bundle_id(folder: str) -> str:
    return skill_bundle_id(bundle(folder))[0]


async def test_expired_files_leave_the_store_and_unexpired_ones_stay(env) -> None:
    server, cluster = env
    client, store = sdk(server), store_of(server)
    expiring = await client.files.create(file=("soon.txt", b"soon"), purpose="user_data",
                                         expires_after={"anchor": "created_at", "seconds": 3600})
    kept = await client.files.create(file=("kept.txt", b"kept"), purpose="user_data")
    batch = await client.files.create(file=("b.jsonl", b"{}\n"), purpose="batch")  # expires in 30 days
    assert (await sweep(server, cluster))["expired_removed"] == 0
    assert await exists(store, expiring.id)

    counts = await sweep(server, cluster, now=time.time() + 3601)
    assert counts["expired_removed"] == 1
    assert not await exists(store, expiring.id)
    assert await exists(store, kept.id) and await exists(store, batch.id)
    assert (await client.files.content(kept.id)).read() == b"kept"


async def test_bundles_stay_while_named_and_go_when_unused_and_old(env) -> None:
    server, cluster = env
    client, store = sdk(server), store_of(server)
    await client.containers.create(name="uses it", skills=[inline("in-container")])
    await client.skills.create(files=[("s.zip", bundle("in-skill"), "application/zip")])
    await keep_bundle(store, TENANT, "unused-old", bundle("unused-old"))
    await keep_bundle(store, TENANT, "unused-fresh", bundle("unused-fresh"))
    for folder in ("in-container", "in-skill", "unused-old"):
        await age(store, bundle_id(folder))

    counts = await sweep(server, cluster)
    assert (counts["bundles_removed"], counts["bundles_kept"]) == (1, 3)
    assert not await exists(store, bundle_id("unused-old"))
    for folder in ("in-container", "in-skill", "unused-fresh"):
        assert await exists(store, bundle_id(folder)), folder


async def test_a_deleted_containers_bundle_goes_at_the_next_sweep(env) -> None:
    server, cluster = env
    client, store = sdk(server), store_of(server)
    container = await client.containers.create(name="short-lived", skills=[inline("one-off")])
    await age(store, bundle_id("one-off"))
    await sweep(server, cluster)
    assert await exists(store, bundle_id("one-off"))

    await client.containers.delete(container.id)
    assert (await sweep(server, cluster))["bundles_removed"] == 1
    assert not await exists(store, bundle_id("one-off"))


async def test_a_deleted_skills_bundle_stays_while_a_container_uses_it(env) -> None:
    server, cluster = env
    client, store = sdk(server), store_of(server)
    skill = await client.skills.create(files=[("s.zip", bundle("referenced"), "application/zip")])
    container = await client.containers.create(name="pinned", skills=[{"type": "skill_reference",
                                                                        "skill_id": skill.id}])
    await client.skills.delete(skill.id)
    await age(store, bundle_id("referenced"))
    await sweep(server, cluster)
    assert await exists(store, bundle_id("referenced"))

    await client.containers.delete(container.id)
    await sweep(server, cluster)
    assert not await exists(store, bundle_id("referenced"))


async def test_a_reused_bundle_is_fresh_again_for_the_create_naming_it(env) -> None:
    """An old unused bundle that a create (or a skill version) stores again is not swept before the
    Container naming it is written."""
    server, cluster = env
    store = store_of(server)
    await keep_bundle(store, TENANT, "again", bundle("again"))
    await age(store, bundle_id("again"))
    await keep_bundle(store, TENANT, "again", bundle("again"))  # a create in flight
    assert (await sweep(server, cluster))["bundles_removed"] == 0
    assert await exists(store, bundle_id("again"))


async def test_bundles_are_judged_only_with_a_synced_cache_of_the_tenants_namespace(env) -> None:
    server, cluster = env
    store = store_of(server)
    await keep_bundle(store, TENANT, "orphan", bundle("orphan"))
    await age(store, bundle_id("orphan"))
    expired = await store.put(TenantFile(id=new_file_id(), tenant=TENANT, filename="x", purpose="user_data",
                                         created_at=int(time.time()) - 10, expires_at=int(time.time()) - 1),
                              _one(b"x"), max_bytes=10)
    counts = await sweep(server, cluster, namespaces=["another"])  # not ours to judge; expiry is
    assert (counts["bundles_removed"], counts["expired_removed"]) == (0, 1)
    assert await exists(store, bundle_id("orphan"))
    assert not await exists(store, expired.id)
    cluster.containers.synced = False  # e.g. the watch has not listed yet
    assert (await sweep(server, cluster))["bundles_removed"] == 0
    assert await exists(store, bundle_id("orphan"))
    cluster.containers.synced = True
    assert (await sweep(server, cluster, namespaces=[TENANT]))["bundles_removed"] == 1


async def test_concurrent_sweeps_remove_each_file_once_without_errors(env) -> None:
    """Replicas sweep the same store at once: deletes are idempotent, each counts only its own."""
    server, cluster = env
    store = store_of(server)
    for folder in ("a", "b", "c"):
        await keep_bundle(store, TENANT, folder, bundle(folder))
        await age(store, bundle_id(folder))
    results = await asyncio.gather(*(sweep(server, cluster) for _ in range(3)))
    assert sum(r["bundles_removed"] for r in results) == 3
    assert [i for i in await store.ids(TENANT) if i.startswith("skill-")] == []


async def test_tenants_are_only_tenants_not_the_upload_and_skill_areas(env) -> None:
    server, _ = env
    client = sdk(server)
    await client.files.create(file=("a.txt", b"a"), purpose="user_data")
    await client.skills.create(files=[("s.zip", bundle("s"), "application/zip")])
    await client.uploads.create(bytes=1, filename="u", mime_type="text/plain", purpose="user_data")
    assert await store_of(server).tenants() == [TENANT]


async def test_the_gateway_sweeps_at_start_and_periodically(files_settings: FilesSettings,
                                                            sweep_log: SweepLog) -> None:
    server, cluster = await start(files_settings.model_copy(update={"store_sweep_seconds": 0.2}))
    try:
        await sweep_log.wait(1)
        store = store_of(server)
        expired = await store.put(TenantFile(id=new_file_id(), tenant=TENANT, filename="x", purpose="user_data",
                                             created_at=int(time.time()) - 10, expires_at=int(time.time()) - 1),
                                  _one(b"x"), max_bytes=10)
        await sweep_log.wait(len(sweep_log.rounds) + 2)  # a whole round after the put
        assert not await exists(store, expired.id)
        assert {"tenants", "expired_removed", "bundles_removed"} <= set(vars(sweep_log.rounds[-1]))
    finally:
        await server.close()


async def _one(data: bytes):
    yield data
