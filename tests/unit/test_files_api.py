"""`/v1/files` through the official openai SDK, against the gateway app on loopback (kube faked).

Every case runs on both store backends: a directory and a real S3-compatible server (versitygw).
"""

from __future__ import annotations

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
from kontainers.gateway.app import create_app
from kontainers.settings import FilesSettings

KEY_A, KEY_B = "sk-files-a", "sk-files-b"
LIMIT = 6 * 1024 * 1024


@pytest.fixture(params=["filesystem", "s3"])
def files_settings(request: pytest.FixtureRequest, tmp_path: Path) -> FilesSettings:
    if request.param == "filesystem":
        return files_settings_for(request, "filesystem", tmp_path, max_upload_bytes=LIMIT, max_list_limit=10_000)
    return files_settings_for(request, "s3", tmp_path, s3_part_bytes=5 * 1024 * 1024, max_upload_bytes=LIMIT)


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


async def test_upload_retrieve_list_download_delete(server: TestServer) -> None:
    client = sdk(server)
    payload = os.urandom(5 * 1024 * 1024 + 3)  # more than one S3 part
    created = await client.files.create(file=("data.bin", io.BytesIO(payload)), purpose="user_data")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose, created.status) == (
        len(payload), "data.bin", "user_data", "processed")
    assert abs(created.created_at - time.time()) < 60 and created.expires_at is None

    assert await client.files.retrieve(created.id) == created
    assert [f.id async for f in client.files.list()] == [created.id]
    content = await client.files.content(created.id)
    assert content.read() == payload

    deleted = await client.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        await client.files.delete(created.id)
    assert [f.id async for f in client.files.list()] == []


async def test_list_pages_in_both_orders_and_filters_by_purpose(server: TestServer) -> None:
    client = sdk(server)
    ids = []
    for index in range(7):
        purpose = "assistants" if index % 3 == 0 else "user_data"
        ids.append((await client.files.create(file=(f"f{index}.txt", b"%d" % index), purpose=purpose)).id)

    first = await client.files.list(limit=3, order="asc")
    assert [f.id for f in first.data] == ids[:3] and first.has_more is True
    assert [f.id async for f in client.files.list(limit=3, order="asc")] == ids
    assert [f.id async for f in client.files.list(limit=2)] == ids[::-1]  # default desc
    assert [f.id async for f in client.files.list(limit=1, purpose="assistants")] == [ids[6], ids[3], ids[0]]

    raw = await client.files.with_raw_response.list(limit=2, order="asc", after=ids[4])
    body = raw.http_response.json()
    assert body == {"object": "list", "data": body["data"], "first_id": ids[5], "last_id": ids[6],
                    "has_more": False}


async def test_tenants_are_isolated(server: TestServer) -> None:
    mine = await sdk(server, KEY_A).files.create(file=("secret.txt", b"mine"), purpose="user_data")
    other = sdk(server, KEY_B)
    assert [f async for f in other.files.list()] == []
    for call in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            await call(mine.id)
        assert mine.id in caught.value.message
    assert (await sdk(server, KEY_A).files.content(mine.id)).read() == b"mine"


async def test_over_the_limit_is_a_413_and_nothing_is_kept(server: TestServer) -> None:
    client = sdk(server)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.files.create(file=("big.bin", os.urandom(LIMIT + 1)), purpose="user_data")
    assert caught.value.status_code == 413
    assert caught.value.body["param"] == "file"
    assert [f async for f in client.files.list()] == []


async def test_streamed_over_the_limit_without_content_length(server: TestServer) -> None:
    """A chunked body gives no early Content-Length: the limit is enforced while storing."""

    async def body():
        for _ in range(LIMIT // (1024 * 1024) + 2):
            yield os.urandom(1024 * 1024)

    writer = aiohttp.MultipartWriter("form-data")
    writer.append("user_data").set_content_disposition("form-data", name="purpose")
    part = writer.append(body(), {"Content-Type": "application/octet-stream"})
    part.set_content_disposition("form-data", name="file", filename="stream.bin")
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/files"), data=writer,
                                headers={"Authorization": f"Bearer {KEY_A}"}) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == "file_too_large"
    assert [f async for f in sdk(server).files.list()] == []


async def test_bad_purposes_and_missing_parts(server: TestServer) -> None:
    client = sdk(server)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.create(file=("a.txt", b"a"), purpose="homework")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "purpose"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY_A}"}) as session:
        only_file = aiohttp.FormData()
        only_file.add_field("file", b"x", filename="x.txt")
        async with session.post(server.make_url("/v1/files"), data=only_file) as response:
            assert response.status == 400 and (await response.json())["error"]["param"] == "purpose"
        only_purpose = aiohttp.FormData({"purpose": "user_data"})
        only_purpose.add_field("other", b"x", filename="x.txt")
        async with session.post(server.make_url("/v1/files"), data=only_purpose) as response:
            assert response.status == 400
        async with session.post(server.make_url("/v1/files"), json={"purpose": "user_data"}) as response:
            assert response.status == 400 and (await response.json())["error"]["param"] == "file"
    assert [f async for f in client.files.list()] == []


async def test_fields_after_the_file_part_still_count(server: TestServer) -> None:
    """curl -F file=@x -F purpose=… sends the file first."""
    form = aiohttp.FormData()
    form.add_field("file", b"late", filename="../../etc/late.txt")
    form.add_field("purpose", "assistants")
    form.add_field("expires_after[anchor]", "created_at")
    form.add_field("expires_after[seconds]", "7200")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY_A}"}) as session:
        async with session.post(server.make_url("/v1/files"), data=form) as response:
            assert response.status == 200, await response.text()
            created = await response.json()
    assert created["purpose"] == "assistants"
    assert "/" not in created["filename"] and created["filename"].endswith("late.txt")
    assert created["expires_at"] == created["created_at"] + 7200
    again = await sdk(server).files.retrieve(created["id"])
    assert (again.purpose, again.expires_at) == ("assistants", created["expires_at"])


async def test_expiry(server: TestServer) -> None:
    client = sdk(server)
    batch = await client.files.create(file=("b.jsonl", b"{}"), purpose="batch")
    assert batch.expires_at == batch.created_at + 30 * 24 * 3600
    short = await client.files.create(file=("s.txt", b"s"), purpose="user_data",
                                      expires_after={"anchor": "created_at", "seconds": 3600})
    assert short.expires_at == short.created_at + 3600
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.create(file=("s.txt", b"s"), purpose="user_data",
                                  expires_after={"anchor": "created_at", "seconds": 10})
    assert caught.value.body["param"] == "expires_after.seconds"


async def test_authentication_is_required(server: TestServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        await sdk(server, "sk-unknown").files.list()


async def test_bad_list_parameters(server: TestServer) -> None:
    client = sdk(server)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.list(limit=0)
    assert caught.value.body["param"] == "limit"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.list(order="sideways")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "order"


@pytest.mark.parametrize(("raw", "clean"), [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\me\\report.pdf", "report.pdf"),
    ("..", "upload"), ("", "upload"), (None, "upload"), ("é" * 200, "é" * 127),
])
def test_clean_filename(raw: str | None, clean: str) -> None:
    from kontainers.gateway.files_api import clean_filename

    assert clean_filename(raw) == clean


@pytest.mark.parametrize("raw", ["a\x00b.txt", "a\nb.txt", "tab\there", "del\x7f", "\udcff\udcfe.txt"])
def test_filenames_that_are_refused_not_altered(raw: str) -> None:
    from kontainers.api.errors import APIError
    from kontainers.gateway.files_api import clean_filename

    with pytest.raises(APIError) as caught:
        clean_filename(raw)
    assert caught.value.status == 400 and caught.value.code == "invalid_filename" and caught.value.param == "file"


def raw_upload(filename: bytes, data: bytes = b"hello", purpose: bytes = b"assistants") -> tuple[bytes, dict]:
    """A multipart upload whose file part's Content-Disposition ends with `filename` (quoted, unless
    it is an RFC 5987 `*=` parameter)."""
    param = filename if filename.startswith(b"filename*=") else b'filename="' + filename + b'"'
    body = (b"--B\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n" + purpose + b"\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"file\"; " + param + b"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--B--\r\n")
    return body, {"Authorization": f"Bearer {KEY_A}", "Content-Type": "multipart/form-data; boundary=B"}


# (A raw control byte in a part header is already a malformed body for aiohttp: invalid_multipart.)
@pytest.mark.parametrize("filename", [b"\xff\xfe.txt", b"caf\xe9.txt", b"filename*=UTF-8''a%00b.txt",
                                      b"filename*=UTF-8''tab%09.txt"])
async def test_a_filename_that_is_not_utf8_or_holds_nul_is_a_400_and_nothing_is_kept(server: TestServer,
                                                                                      filename: bytes) -> None:
    body, headers = raw_upload(filename)
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/files"), data=body, headers=headers) as reply:
            assert reply.status == 400, await reply.text()
            error = (await reply.json())["error"]
    assert error["code"] == "invalid_filename" and error["param"] == "file"
    assert (await sdk(server).files.list()).data == []
    body, headers = raw_upload("café ✓.txt".encode())  # UTF-8 is kept as sent
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/files"), data=body, headers=headers) as reply:
            assert reply.status == 200 and (await reply.json())["filename"] == "café ✓.txt"


@pytest.mark.parametrize("after", ["garbage", "", "file-", "file-zz", "cntr_abc", "skill-" + "0" * 29])
async def test_a_cursor_that_is_no_file_id_is_a_400_like_containers(server: TestServer, after: str) -> None:
    await sdk(server).files.create(file=("a.txt", b"a"), purpose="assistants")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY_A}"}) as session:
        async with session.get(server.make_url("/v1/files"), params={"after": after}) as reply:
            assert reply.status == 400, await reply.text()
            assert (await reply.json())["error"]["param"] == "after"
        async with session.get(server.make_url("/v1/containers"), params={"after": after}) as reply:
            assert reply.status == 400 and (await reply.json())["error"]["param"] == "after"
        # a well-formed id of a file deleted since (or never seen) is still a cursor
        async with session.get(server.make_url("/v1/files"), params={"after": "file-" + "f" * 29}) as reply:
            assert reply.status == 200 and len((await reply.json())["data"]) == 1


async def test_the_openapi_document_says_what_the_server_does(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/openapi.json")) as reply:
            document = await reply.json()
    files_limit = next(p for p in document["paths"]["/files"]["get"]["parameters"] if p["name"] == "limit")
    assert files_limit["schema"]["maximum"] == 10_000 and files_limit["schema"]["default"] == 10_000
    for path in ("/files", "/containers", "/containers/{container_id}/files"):
        after = next(p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "after")
        assert after["schema"]["minLength"] == 1, path
    assert "404" in document["paths"]["/containers"]["post"]["responses"]  # unknown file_ids
    client = sdk(server)
    for _ in range(3):
        await client.files.create(file=("a.txt", b"a"), purpose="assistants")
    assert len((await client.files.list(limit=10_000)).data) == 3


async def test_an_expired_file_is_gone(server: TestServer, files_settings: FilesSettings) -> None:
    from kontainers.gateway.files_api import FILE_STORE
    from kontainers.files.store import TenantFile as FileRecord, new_file_id

    store = server.app[FILE_STORE]

    async def one():
        yield b"old"

    old = await store.put(FileRecord(new_file_id(), "tenant-a", "old.txt", "user_data", int(time.time()) - 7200,
                                     expires_at=int(time.time()) - 1), one(), max_bytes=10)
    client = sdk(server)
    assert [f async for f in client.files.list()] == []
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(old.id)
    assert await store.ids("tenant-a") == []  # removed when it was asked for


@pytest.mark.parametrize(("content_type", "body"), [
    ("multipart/form-data", b"no boundary in the content type"),
    ("multipart/form-data; boundary=B", b"no boundary in the body"),
    ("multipart/form-data; boundary=B", b"--B\r\nheader-without-colon\r\n\r\nx\r\n--B--\r\n"),
    ("multipart/form-data; boundary=B", b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data'
     b'\r\n--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nends without its boundary'),
])
async def test_a_malformed_multipart_body_is_400_and_nothing_is_kept(server: TestServer, content_type: str,
                                                                    body: bytes) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY_A}"}) as session:
        async with session.post(server.make_url("/v1/files"), data=body,
                                headers={"Content-Type": content_type}) as response:
            assert response.status == 400, await response.text()
            assert response.content_type == "application/json"
            assert (await response.json())["error"]["code"] == "invalid_multipart"
    assert [f async for f in sdk(server).files.list()] == []
