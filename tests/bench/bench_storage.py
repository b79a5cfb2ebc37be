"""Benchmarks of the Files API store (prints figures; asserts only correctness, never time).

    .venv/bin/python -m pytest tests/bench/bench_storage.py -s            # both benchmarks
    .venv/bin/python -m pytest tests/bench/bench_storage.py -s -k upload  # no control plane needed

- upload throughput of both backends (a directory, versitygw on loopback): straight into the
  store, and as `POST /v1/files` multipart through the gateway app (kube faked), 256 MiB of
  generated data streamed — never held whole on either side;
- time from `containers.create` to `running` with 10 × 10 MB `file_ids` versus none, on the real
  control plane with the operator, gateway and dev node agent (create waits for running, and a
  container with file_ids runs only once they are in its /mnt/data).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from fixtures.gateway import Gateway
from fixtures.gateway_fake import FakeCluster, gateway_test_settings
from fixtures.s3 import LocalS3Server
from kontainers.files.store import TenantFile as FileRecord, make_store, new_file_id
from kontainers.gateway.app import create_app
from kontainers.settings import FilesSettings

MiB = 1024 * 1024
UPLOAD_MIB = 256
KEY = "sk-bench"


async def generated(size: int, chunk: int = MiB) -> AsyncIterator[bytes]:
    block = os.urandom(chunk)
    for _ in range(size // chunk):
        yield block


def settings_for(backend: str, tmp_path: Path, s3: LocalS3Server | None) -> FilesSettings:
    limit = (UPLOAD_MIB + 1) * MiB
    if backend == "filesystem":
        return FilesSettings(root=tmp_path / "files", max_upload_bytes=limit)
    assert s3 is not None
    return FilesSettings(backend="s3", s3_endpoint_url=s3.endpoint_url, s3_bucket=f"bench{os.urandom(3).hex()}",
                         s3_access_key_id=s3.access_key, s3_secret_access_key=s3.secret_key,
                         s3_create_bucket=True, max_upload_bytes=limit)


async def test_upload_throughput_of_both_backends(tmp_path: Path) -> None:
    size = UPLOAD_MIB * MiB
    results = {}
    with LocalS3Server(tmp_path / "s3") as s3:
        for backend in ("filesystem", "s3"):
            settings = settings_for(backend, tmp_path / backend, s3)

            store = make_store(settings)
            await store.start()
            record = FileRecord(id=new_file_id(), tenant="bench", filename="direct.bin", purpose="user_data",
                                created_at=int(time.time()))
            started = time.perf_counter()
            stored = await store.put(record, generated(size), max_bytes=settings.max_upload_bytes)
            direct = size / MiB / (time.perf_counter() - started)
            assert stored.bytes == size
            await store.delete("bench", stored.id)
            await store.close()

            cluster = FakeCluster()
            cluster.add_key(KEY, "bench")
            server = TestServer(create_app(gateway_test_settings(), cluster=cluster, files=settings), host="127.0.0.1")
            await server.start_server()
            try:
                writer = aiohttp.MultipartWriter("form-data")
                writer.append("user_data").set_content_disposition("form-data", name="purpose")
                part = writer.append(generated(size), {"Content-Type": "application/octet-stream"})
                part.set_content_disposition("form-data", name="file", filename="bench.bin")
                async with aiohttp.ClientSession() as session:
                    started = time.perf_counter()
                    async with session.post(server.make_url("/v1/files"), data=writer,
                                            headers={"Authorization": f"Bearer {KEY}"}) as response:
                        body = await response.json()
                    api = size / MiB / (time.perf_counter() - started)
                assert response.status == 200 and body["bytes"] == size, body
            finally:
                await server.close()
            results[backend] = (direct, api)

    print(f"\nupload of {UPLOAD_MIB} MiB (MiB/s)   store.put   POST /v1/files (gateway)")
    for backend, (direct, api) in results.items():
        print(f"  {backend:<28} {direct:9.1f}   {api:9.1f}")


@pytest.mark.cluster
def test_create_to_running_with_ten_10mb_file_ids_vs_none(gateway: Gateway) -> None:
    tenant = gateway.make_tenant("bench-files")
    client = tenant.client
    ids = [client.files.create(file=(f"input-{i}.bin", os.urandom(10 * 1000 * 1000)), purpose="user_data").id
           for i in range(10)]
    rounds = 3
    timings: dict[str, list[float]] = {"no file_ids": [], "10 x 10 MB file_ids": []}
    for _ in range(rounds):
        for label, file_ids in (("no file_ids", None), ("10 x 10 MB file_ids", ids)):
            started = time.perf_counter()
            container = client.containers.create(name="bench", **({"file_ids": file_ids} if file_ids else {}))
            timings[label].append(time.perf_counter() - started)
            assert container.status == "running"
            if file_ids:
                files = list(client.containers.files.list(container.id))
                assert len(files) == 10 and {f.bytes for f in files} == {10 * 1000 * 1000}
            client.containers.delete(container.id)

    print(f"\ncreate → running (seconds, {rounds} rounds)   median   min    max")
    for label, values in timings.items():
        print(f"  {label:<34} {statistics.median(values):6.2f} {min(values):6.2f} {max(values):6.2f}")
