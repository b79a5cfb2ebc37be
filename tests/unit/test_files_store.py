"""The file store's contract, run against both backends: a directory and a real S3-compatible server.

The S3 backend talks to versitygw (built from the pinned Go module, see tests/fixtures/s3.py)
listening on loopback, so these tests exercise the real S3 wire protocol, multipart uploads included.
"""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from dataclasses import replace
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kontainers.files.fsstore import FilesystemStore
from fixtures.s3 import LocalS3Server
from kontainers.files.s3store import MIN_PART_BYTES, S3Store
from kontainers.files.store import FileNotFound, new_file_id
from kontainers.files.store import TenantFile as FileRecord
from kontainers.files.store import TenantFileStore as FileStore
from kontainers.files.store import TenantFileTooLarge as FileTooLarge

MiB = 1024 * 1024


@pytest.fixture(params=["filesystem", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FileStore]:
    if request.param == "filesystem":
        backend: FileStore = FilesystemStore(tmp_path / "files")
    else:
        server: LocalS3Server = request.getfixturevalue("s3_server")
        backend = S3Store(
            f"test-{os.urandom(4).hex()}",
            prefix="files/",
            endpoint_url=server.endpoint_url,
            access_key_id=server.access_key,
            secret_access_key=server.secret_key,
            create_bucket=True,
            part_bytes=MIN_PART_BYTES,
        )
    await backend.start()
    yield backend
    await backend.close()


def record(tenant: str = "tenant-a", filename: str = "data.bin", purpose: str = "user_data", **extra) -> FileRecord:
    return FileRecord(id=new_file_id(), tenant=tenant, filename=filename, purpose=purpose,
                      created_at=int(time.time()), **extra)


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(store: FileStore, tenant: str, file_id: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(tenant, file_id)])


@pytest.mark.parametrize("size", [0, 1, 3 * MiB, 2 * MIN_PART_BYTES + 12345])
async def test_put_then_read_back_identical(store: FileStore, size: int) -> None:
    data = os.urandom(size)
    stored = await store.put(record(), chunks_of(data), max_bytes=100 * MiB)
    assert stored.bytes == size
    assert await read_all(store, "tenant-a", stored.id) == data
    assert await store.stat("tenant-a", stored.id) == stored


async def test_names_and_purposes_survive(store: FileStore) -> None:
    name = "résumé 100% / ..\\ünïcode.txt"
    stored = await store.put(record(filename=name, purpose="assistants", expires_at=2_000_000_000),
                             chunks_of(b"x"), max_bytes=10)
    again = await store.stat("tenant-a", stored.id)
    assert (again.filename, again.purpose, again.expires_at) == (name, "assistants", 2_000_000_000)


async def test_over_the_limit_leaves_nothing(store: FileStore) -> None:
    item = record()
    with pytest.raises(FileTooLarge):
        await store.put(item, chunks_of(os.urandom(2 * MIN_PART_BYTES + 1)), max_bytes=2 * MIN_PART_BYTES)
    assert await store.ids("tenant-a") == []
    with pytest.raises(FileNotFound):
        await store.stat("tenant-a", item.id)
    await assert_no_leftovers(store)


async def test_a_failing_stream_leaves_nothing(store: FileStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        for _ in range(3):  # past one multipart part, so S3 has an upload in flight to abort
            yield os.urandom(MIN_PART_BYTES)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put(record(), broken(), max_bytes=100 * MiB)
    assert await store.ids("tenant-a") == []
    await assert_no_leftovers(store)


async def assert_no_leftovers(store: FileStore) -> None:
    if isinstance(store, FilesystemStore):
        leftovers = [p for p in store.root.rglob("*") if p.is_file()]
    else:
        assert isinstance(store, S3Store)
        uploads = await store._client.list_multipart_uploads(Bucket=store.bucket)
        objects = await store._client.list_objects_v2(Bucket=store.bucket)
        leftovers = uploads.get("Uploads", []) + objects.get("Contents", [])
    assert leftovers == []


async def test_delete(store: FileStore) -> None:
    stored = await store.put(record(), chunks_of(b"bye"), max_bytes=10)
    assert await store.delete("tenant-a", stored.id) is True
    assert await store.delete("tenant-a", stored.id) is False
    with pytest.raises(FileNotFound):
        await store.stat("tenant-a", stored.id)
    with pytest.raises(FileNotFound):
        await read_all(store, "tenant-a", stored.id)
    assert await store.ids("tenant-a") == []


async def test_tenants_do_not_see_each_other(store: FileStore) -> None:
    mine = await store.put(record(tenant="tenant-a"), chunks_of(b"secret"), max_bytes=10)
    assert await store.ids("tenant-b") == []
    with pytest.raises(FileNotFound):
        await store.stat("tenant-b", mine.id)
    with pytest.raises(FileNotFound):
        await read_all(store, "tenant-b", mine.id)
    assert await store.delete("tenant-b", mine.id) is False
    assert await read_all(store, "tenant-a", mine.id) == b"secret"


@pytest.mark.parametrize("bad_id", ["../tenant-b/x", "file-", "file-zz", "/etc/passwd", "file-../../x"])
async def test_malformed_ids_are_not_found(store: FileStore, bad_id: str) -> None:
    with pytest.raises(FileNotFound):
        await store.stat("tenant-a", bad_id)
    with pytest.raises(FileNotFound):
        await read_all(store, "tenant-a", bad_id)


async def test_page_orders_filters_and_continues(store: FileStore) -> None:
    made = []
    for index in range(7):
        purpose = "assistants" if index % 2 else "user_data"
        made.append(await store.put(record(purpose=purpose), chunks_of(b"%d" % index), max_bytes=10))
    expired = await store.put(record(expires_at=int(time.time()) - 1), chunks_of(b"old"), max_bytes=10)
    ids = [item.id for item in made]

    page, more = await store.page("tenant-a", limit=3, order="asc")
    assert [item.id for item in page] == ids[:3] and more is True
    page, more = await store.page("tenant-a", limit=3, order="asc", after=ids[2])
    assert [item.id for item in page] == ids[3:6] and more is True
    page, more = await store.page("tenant-a", limit=3, order="asc", after=ids[5])
    assert [item.id for item in page] == ids[6:] and more is False

    page, more = await store.page("tenant-a", limit=100, order="desc")
    assert [item.id for item in page] == ids[::-1] and more is False
    assert expired.id not in [item.id for item in page]

    page, more = await store.page("tenant-a", limit=2, order="desc", purpose="assistants")
    assert [item.id for item in page] == [ids[5], ids[3]] and more is True

    # A cursor whose file was deleted meanwhile still continues from its place.
    await store.delete("tenant-a", ids[3])
    page, _ = await store.page("tenant-a", limit=2, order="desc", after=ids[3])
    assert [item.id for item in page] == [ids[2], ids[1]]


async def test_bytes_are_streamed_not_buffered(store: FileStore) -> None:
    """A 96 MiB upload in 64 KiB chunks holds at most half of it in memory; digest equal."""
    digest = hashlib.sha256()

    async def generated() -> AsyncIterator[bytes]:
        block = os.urandom(64 * 1024)
        for _ in range(1536):
            digest.update(block)
            yield block

    tracemalloc.start()
    try:
        stored = await store.put(record(), generated(), max_bytes=100 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored.bytes == 96 * MiB
    assert peak < 48 * MiB, f"peak {peak / MiB:.1f} MiB while storing 96 MiB"
    back = hashlib.sha256()
    async for chunk in store.read("tenant-a", stored.id):
        back.update(chunk)
    assert back.hexdigest() == digest.hexdigest()


async def test_rewrite_record_keeps_the_bytes(store: FileStore) -> None:
    stored = await store.put(record(purpose=""), chunks_of(b"late purpose"), max_bytes=100)
    await store.record("tenant-a", stored.id)  # cached on the way
    fixed = replace(stored, purpose="assistants", expires_at=2_000_000_000)
    await store.rewrite_record(fixed)
    assert await store.stat("tenant-a", stored.id) == fixed
    assert await store.record("tenant-a", stored.id) == fixed
    assert await read_all(store, "tenant-a", stored.id) == b"late purpose"


async def test_temp_files_of_dead_writers_go_at_start_and_by_the_sweep_never_a_live_uploads(tmp_path) -> None:
    """A gateway killed mid-upload left its temp file for 24 h; repeated crashes filled the volume."""
    import asyncio

    from kontainers.files.fsstore import TEMP_PREFIX
    from kontainers.files.store import TenantFile

    root = tmp_path / "files"
    (root / "tenant-a").mkdir(parents=True)
    dead_before = root / "tenant-a" / f"{TEMP_PREFIX}killed"
    dead_before.write_bytes(b"x" * 1024)
    old = time.time() - 3600
    os.utime(dead_before, (old, old))
    fresh = root / "tenant-a" / f"{TEMP_PREFIX}another-replica-writing"
    fresh.write_bytes(b"y")
    store = FilesystemStore(root, sweep_seconds=0.1, stale_temp_seconds=0.5)
    await store.start()
    try:
        assert not dead_before.exists() and fresh.exists()  # at start: only stale ones

        gate = asyncio.Event()

        async def slow_chunks():
            yield b"first"
            await gate.wait()  # a client that pauses for longer than the stale time
            yield b"second"

        record = TenantFile(id=new_file_id(), tenant="tenant-a", filename="slow.bin", purpose="assistants",
                            created_at=int(time.time()))
        upload = asyncio.create_task(store.put(record, slow_chunks(), max_bytes=1024))
        await asyncio.sleep(1.5)  # many sweeps, three stale periods
        live = [p for p in (root / "tenant-a").iterdir() if p.name.startswith(TEMP_PREFIX)]
        assert len(live) == 1  # the live upload's temp file survived; the other writer's went
        assert not fresh.exists()
        gate.set()
        stored = await upload
        assert stored.bytes == len(b"firstsecond")
        assert b"".join([c async for c in store.read("tenant-a", record.id)]) == b"firstsecond"
        assert [p for p in (root / "tenant-a").iterdir() if p.name.startswith(TEMP_PREFIX)] == []
    finally:
        await store.close()
