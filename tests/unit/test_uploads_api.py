"""`/v1/uploads` through the official openai SDK, against the gateway app on loopback (kube faked).

Every case runs on both store backends: a directory and a real S3-compatible server (versitygw).
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from fixtures.gateway_fake import FakeCluster, gateway_test_settings
from fixtures.s3 import files_settings_for
from kontainers.files.parts import RECORD_RETENTION_SECONDS
from kontainers.gateway.app import create_app
from kontainers.gateway.uploads_api import UPLOAD_STORE
from kontainers.settings import FilesSettings

KEY_A, KEY_B = "sk-uploads-a", "sk-uploads-b"
MiB = 1024 * 1024
PART_LIMIT = 6 * MiB
TOTAL_LIMIT = 40 * MiB


@pytest.fixture(params=["filesystem", "s3"])
def files_settings(request: pytest.FixtureRequest, tmp_path: Path) -> FilesSettings:
    limits = {"upload_part_max_bytes": PART_LIMIT, "upload_max_bytes": TOTAL_LIMIT, "upload_sweep_seconds": 3600}
    if request.param == "s3":
        limits["s3_part_bytes"] = 5 * MiB
    return files_settings_for(request, request.param, tmp_path, **limits)


@pytest.fixture
async def server(files_settings: FilesSettings):
    cluster = FakeCluster()
    cluster.add_key(KEY_A, "tenant-a")
    cluster.add_key(KEY_B, "tenant-b")
    app = create_app(gateway_test_settings(), cluster=cluster, files=files_settings)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


def sdk(server: TestServer, key: str = KEY_A) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=key, max_retries=0)


async def test_parts_in_order_become_one_file(server: TestServer) -> None:
    client = sdk(server)
    pieces = [os.urandom(5 * MiB + 1), os.urandom(17), os.urandom(2 * MiB)]
    payload = b"".join(pieces)
    upload = await client.uploads.create(bytes=len(payload), filename="big.bin", mime_type="application/octet-stream",
                                         purpose="user_data")
    assert upload.id.startswith("upload_") and (upload.object, upload.status) == ("upload", "pending")
    assert (upload.bytes, upload.filename, upload.purpose, upload.file) == (len(payload), "big.bin", "user_data", None)
    assert upload.expires_at - upload.created_at == 3600
    # Sent out of order, named in order at complete.
    parts = {i: await client.uploads.parts.create(upload.id, data=pieces[i]) for i in (2, 0, 1)}
    for part in parts.values():
        assert part.id.startswith("part_") and (part.object, part.upload_id) == ("upload.part", upload.id)
    order = [parts[i].id for i in range(3)]
    done = await client.uploads.complete(upload.id, part_ids=order, md5=hashlib.md5(payload).hexdigest())
    assert (done.id, done.status) == (upload.id, "completed")
    assert done.file is not None and done.file.id.startswith("file-")
    assert (done.file.bytes, done.file.filename, done.file.purpose) == (len(payload), "big.bin", "user_data")
    assert (await client.files.content(done.file.id)).read() == payload
    assert [f.id async for f in client.files.list()] == [done.file.id]  # upload state is not listed
    # A retried complete answers the same Upload and File; the parts are gone.
    again = await client.uploads.complete(upload.id, part_ids=order)
    assert again.file is not None and again.file.id == done.file.id
    assert await server.app[UPLOAD_STORE].parts("tenant-a", upload.id) == {}
    with pytest.raises(openai.BadRequestError):
        await client.uploads.parts.create(upload.id, data=b"late")
    with pytest.raises(openai.BadRequestError):
        await client.uploads.cancel(upload.id)


async def test_upload_file_chunked_and_expiry_of_the_file(server: TestServer, tmp_path: Path) -> None:
    client = sdk(server)
    payload = os.urandom(13 * MiB + 5)
    source = tmp_path / "chunked.bin"
    source.write_bytes(payload)
    done = await client.uploads.upload_file_chunked(file=source, mime_type="application/octet-stream",
                                                    purpose="assistants", part_size=4 * MiB)
    assert done.status == "completed" and done.file is not None and done.file.bytes == len(payload)
    assert (await client.files.content(done.file.id)).read() == payload
    batch = await client.uploads.create(bytes=3, filename="b.jsonl", mime_type="text/jsonl", purpose="batch",
                                        expires_after={"anchor": "created_at", "seconds": 7200})
    part = await client.uploads.parts.create(batch.id, data=b"abc")
    finished = await client.uploads.complete(batch.id, part_ids=[part.id])
    assert finished.file is not None and finished.file.expires_at == finished.file.created_at + 7200


async def test_wrong_totals_checksums_and_ids_are_refused(server: TestServer) -> None:
    client = sdk(server)
    upload = await client.uploads.create(bytes=10, filename="x.txt", mime_type="text/plain", purpose="user_data")
    first = await client.uploads.parts.create(upload.id, data=b"12345")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.uploads.complete(upload.id, part_ids=[first.id])
    assert caught.value.body["param"] == "part_ids"
    second = await client.uploads.parts.create(upload.id, data=b"67890")
    with pytest.raises(openai.BadRequestError) as caught:
        await client.uploads.complete(upload.id, part_ids=[first.id, "part_00000000000000000000000000000"])
    assert caught.value.body["param"] == "part_ids[1]"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.uploads.complete(upload.id, part_ids=[first.id, first.id])
    assert caught.value.body["param"] == "part_ids[1]"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.uploads.complete(upload.id, part_ids=[first.id, second.id], md5="0" * 32)
    assert caught.value.body["param"] == "md5"
    assert [f async for f in client.files.list()] == []  # no File from a failed check
    done = await client.uploads.complete(upload.id, part_ids=[second.id, first.id],
                                         md5=hashlib.md5(b"6789012345").hexdigest())
    assert (await client.files.content(done.file.id)).read() == b"6789012345"

    with pytest.raises(openai.BadRequestError) as caught:
        await client.uploads.create(bytes=TOTAL_LIMIT + 1, filename="x", mime_type="text/plain", purpose="user_data")
    assert caught.value.body["param"] == "bytes"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.uploads.create(bytes=1, filename="x", mime_type="text/plain", purpose="fine-tune-results")
    assert caught.value.body["param"] == "purpose"
    with pytest.raises(openai.NotFoundError):
        await client.uploads.parts.create("upload_00000000000000000000000000000", data=b"x")
    with pytest.raises(openai.NotFoundError):
        await client.uploads.complete("../../etc", part_ids=["part_x"])


async def test_a_part_over_the_limit_is_refused_and_kept_nowhere(server: TestServer) -> None:
    client = sdk(server)
    upload = await client.uploads.create(bytes=TOTAL_LIMIT, filename="x", mime_type="text/plain", purpose="user_data")
    with pytest.raises(openai.APIStatusError) as caught:
        await client.uploads.parts.create(upload.id, data=os.urandom(PART_LIMIT + 1))
    assert caught.value.status_code == 413
    assert await server.app[UPLOAD_STORE].parts("tenant-a", upload.id) == {}


async def test_cancel_removes_the_parts(server: TestServer) -> None:
    client = sdk(server)
    upload = await client.uploads.create(bytes=20, filename="x", mime_type="text/plain", purpose="user_data")
    await client.uploads.parts.create(upload.id, data=b"a" * 10)
    await client.uploads.parts.create(upload.id, data=b"b" * 10)
    store = server.app[UPLOAD_STORE]
    assert len(await store.parts("tenant-a", upload.id)) == 2
    cancelled = await client.uploads.cancel(upload.id)
    assert (cancelled.id, cancelled.status) == (upload.id, "cancelled")
    assert await store.parts("tenant-a", upload.id) == {}
    assert (await client.uploads.cancel(upload.id)).status == "cancelled"  # a retried cancel
    with pytest.raises(openai.BadRequestError):
        await client.uploads.parts.create(upload.id, data=b"x")
    with pytest.raises(openai.BadRequestError):
        await client.uploads.complete(upload.id, part_ids=["part_00000000000000000000000000000"])


async def test_expired_uploads_lose_their_parts_then_their_records(server: TestServer) -> None:
    client = sdk(server)
    upload = await client.uploads.create(bytes=20, filename="x", mime_type="text/plain", purpose="user_data")
    part = await client.uploads.parts.create(upload.id, data=b"a" * 20)
    live = await client.uploads.create(bytes=1, filename="y", mime_type="text/plain", purpose="user_data")
    await client.uploads.parts.create(live.id, data=b"z")
    store = server.app[UPLOAD_STORE]
    assert await store.sweep(now=time.time()) == {"expired": 0, "parts_removed": 0, "records_removed": 0}

    later = max(upload.expires_at, live.expires_at) + 1  # the two may be made in different seconds
    counts = await store.sweep(now=later)
    assert counts["expired"] == 2 and counts["parts_removed"] == 2
    assert await store.parts("tenant-a", upload.id) == {}
    assert (await store.get("tenant-a", upload.id)).status == "expired"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.uploads.complete(upload.id, part_ids=[part.id])
    assert "expired" in caught.value.message
    await store.sweep(now=later + RECORD_RETENTION_SECONDS)
    assert await store.uploads() == []
    with pytest.raises(openai.NotFoundError):
        await client.uploads.cancel(upload.id)


async def test_an_upload_past_expires_at_is_expired_before_the_sweep(server: TestServer) -> None:
    client = sdk(server)
    upload = await client.uploads.create(bytes=1, filename="x", mime_type="text/plain", purpose="user_data")
    store = server.app[UPLOAD_STORE]
    record = await store.get("tenant-a", upload.id)
    from dataclasses import replace

    await store.save(replace(record, expires_at=int(time.time()) - 1))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.uploads.parts.create(upload.id, data=b"x")
    assert "expired" in caught.value.message


async def test_uploads_of_one_tenant_are_invisible_to_another(server: TestServer) -> None:
    alice, bob = sdk(server, KEY_A), sdk(server, KEY_B)
    upload = await alice.uploads.create(bytes=5, filename="a.txt", mime_type="text/plain", purpose="user_data")
    part = await alice.uploads.parts.create(upload.id, data=b"alice")
    with pytest.raises(openai.NotFoundError):
        await bob.uploads.parts.create(upload.id, data=b"bob")
    with pytest.raises(openai.NotFoundError):
        await bob.uploads.complete(upload.id, part_ids=[part.id])
    with pytest.raises(openai.NotFoundError):
        await bob.uploads.cancel(upload.id)
    done = await alice.uploads.complete(upload.id, part_ids=[part.id])
    with pytest.raises(openai.NotFoundError):
        await bob.files.retrieve(done.file.id)
    assert (await alice.files.content(done.file.id)).read() == b"alice"


async def test_malformed_part_bodies(server: TestServer) -> None:
    client = sdk(server)
    upload = await client.uploads.create(bytes=5, filename="a.txt", mime_type="text/plain", purpose="user_data")
    url = server.make_url(f"/v1/uploads/{upload.id}/parts")
    headers = {"Authorization": f"Bearer {KEY_A}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=b"raw", headers=headers) as reply:
            assert reply.status == 400
        form = aiohttp.FormData()
        form.add_field("other", io.BytesIO(b"x"), filename="x")
        async with session.post(url, data=form, headers=headers) as reply:
            assert reply.status == 400 and (await reply.json())["error"]["param"] == "other"
        async with session.post(server.make_url("/v1/uploads"), json={"bytes": 1}, headers=headers) as reply:
            assert reply.status == 400
            assert (await reply.json())["error"]["code"] == "missing_required_parameter"


@pytest.mark.parametrize(("body", "param"), [
    ({"bytes": False}, "bytes"), ({"bytes": "5"}, "bytes"), ({"bytes": 5.0}, "bytes"),
    ({"bytes": 5, "expires_after": {"anchor": "created_at", "seconds": "3600"}}, "expires_after.seconds"),
])
async def test_loosely_typed_values_are_refused(server: TestServer, body: dict, param: str) -> None:
    """`"bytes": false` was an Upload of 0 bytes: request values are taken as typed, never coerced."""
    body = {"bytes": 5, "filename": "a.txt", "mime_type": "text/plain", "purpose": "user_data", **body}
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/uploads"), json=body,
                                headers={"Authorization": f"Bearer {KEY_A}"}) as reply:
            assert reply.status == 400, await reply.text()
            assert (await reply.json())["error"]["param"] == param
        async with session.post(server.make_url("/v1/uploads/upload_x/complete"), json={"part_ids": "part_x"},
                                headers={"Authorization": f"Bearer {KEY_A}"}) as reply:
            assert reply.status in (400, 404)


async def test_openapi_states_the_forms_and_bounds_the_server_applies(server: TestServer) -> None:
    """What schemathesis held against the document: the Files form's fields and no others, a
    Part's form, and the bound of an Upload's `bytes`."""
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/openapi.json")) as reply:
            document = await reply.json()
    form = document["paths"]["/files"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["additionalProperties"] is False
    assert set(form["properties"]) == {"file", "purpose", "expires_after[anchor]", "expires_after[seconds]"}
    part = document["paths"]["/uploads/{upload_id}/parts"]["post"]["requestBody"]["content"]
    assert part["multipart/form-data"]["schema"]["additionalProperties"] is False
    bytes_schema = document["components"]["schemas"]["UploadCreateParams"]["properties"]["bytes"]
    assert bytes_schema["maximum"] == 8 * 1024 ** 3


async def test_openapi_lists_uploads(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/openapi.json")) as reply:
            document = await reply.json()
    for path in ("/uploads", "/uploads/{upload_id}/parts", "/uploads/{upload_id}/complete",
                 "/uploads/{upload_id}/cancel"):
        assert "post" in document["paths"][path]
    assert {"Upload", "UploadPart", "UploadCreateParams"} <= set(document["components"]["schemas"])


@pytest.mark.parametrize("sizes", [[5 * MiB, 5 * MiB + 7, 3], [4 * MiB + 1]])
async def test_large_parts_without_md5(server: TestServer, sizes: list[int]) -> None:
    """On S3 these are copied server-side (UploadPartCopy); the File must be the same either way."""
    client = sdk(server)
    pieces = [os.urandom(size) for size in sizes]
    payload = b"".join(pieces)
    upload = await client.uploads.create(bytes=len(payload), filename="copy.bin", mime_type="application/octet-stream",
                                         purpose="user_data")
    part_ids = [(await client.uploads.parts.create(upload.id, data=piece)).id for piece in pieces]
    done = await client.uploads.complete(upload.id, part_ids=part_ids)
    assert done.file is not None and done.file.bytes == len(payload)
    assert await client.files.retrieve(done.file.id) == done.file
    assert (await client.files.content(done.file.id)).read() == payload
