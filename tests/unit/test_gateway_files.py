"""The gateway's container-file routes, proxied to a real files sidecar app on loopback."""

from __future__ import annotations

import base64
import os
import socket

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from fixtures.gateway_fake import FakeCluster, run_immediately, start_client
from kontainers.resources import names
from kontainers.sidecar.app import SidecarConfig, create_app as sidecar_app

KEY = "sk-files"
AUTH = {"Authorization": f"Bearer {KEY}"}
TOKEN = "sidecar-secret-token"


@pytest.fixture
async def sidecar(tmp_path):
    server = TestServer(sidecar_app(SidecarConfig(root=tmp_path / "data", token=TOKEN,
                                                  max_upload_bytes=64 * 1024 * 1024)), host="127.0.0.1")
    (tmp_path / "data").mkdir()
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def cluster() -> FakeCluster:
    fake = FakeCluster()
    fake.add_key(KEY, "files-tenant")
    fake.operator = run_immediately(fake, token=TOKEN)
    return fake


@pytest.fixture
async def client(cluster: FakeCluster, sidecar: TestServer):
    client = await start_client(cluster, sidecar_port=sidecar.port, max_upload_bytes=8 * 1024 * 1024)
    yield client
    await client.close()


async def new_container(client) -> dict:
    response = await client.post("/v1/containers", json={"name": "files"}, headers=AUTH)
    assert response.status == 200
    return await response.json()


def form(data: bytes, filename: str = "blob.bin") -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", data, filename=filename, content_type="application/octet-stream")
    return body


async def expect_error(response, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    assert "x-request-id" in response.headers
    return (await response.json())["error"]


async def test_upload_list_retrieve_download_delete(client, cluster: FakeCluster) -> None:
    container = await new_container(client)
    base = f"/v1/containers/{container['id']}/files"
    payload = os.urandom(5 * 1024 * 1024 + 7)
    response = await client.post(base, data=form(payload), headers=AUTH)
    assert response.status == 200, await response.text()
    created = await response.json()
    assert created["object"] == "container.file" and created["container_id"] == container["id"]
    assert created["id"].startswith("cfile_") and created["bytes"] == len(payload)
    assert created["path"] == "/mnt/data/blob.bin" and created["source"] == "user"

    listing = await (await client.get(base, headers=AUTH)).json()
    assert listing["object"] == "list" and [f["id"] for f in listing["data"]] == [created["id"]]
    assert listing["first_id"] == listing["last_id"] == created["id"] and listing["has_more"] is False

    got = await (await client.get(f"{base}/{created['id']}", headers=AUTH)).json()
    assert got == created

    content = await client.get(f"{base}/{created['id']}/content", headers={**AUTH, "Accept": "application/binary"})
    assert content.status == 200 and "x-request-id" in content.headers
    assert await content.read() == payload

    deleted = await client.delete(f"{base}/{created['id']}", headers=AUTH)
    assert await deleted.json() == {"id": created["id"], "object": "container.file.deleted", "deleted": True}
    error = await expect_error(await client.get(f"{base}/{created['id']}", headers=AUTH), 404)
    assert error["type"] == "invalid_request_error"
    await expect_error(await client.get(f"{base}/cfile_../../etc", headers=AUTH), 404)


async def test_file_list_pagination(client) -> None:
    container = await new_container(client)
    base = f"/v1/containers/{container['id']}/files"
    for n in range(5):
        assert (await client.post(base, data=form(b"x" * n, f"f{n}.txt"), headers=AUTH)).status == 200
    ids, after = [], None
    while True:
        page = await (await client.get(base, params={"limit": "2", "order": "asc", **({"after": after} if after else {})},
                                       headers=AUTH)).json()
        ids += [f["id"] for f in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert len(set(ids)) == 5
    await expect_error(await client.get(base, params={"limit": "500"}, headers=AUTH), 400)


async def test_upload_over_the_limit_is_413_and_leaves_nothing(client) -> None:
    container = await new_container(client)
    base = f"/v1/containers/{container['id']}/files"
    error = await expect_error(await client.post(base, data=form(os.urandom(9 * 1024 * 1024)), headers=AUTH), 413)
    assert error["param"] == "file"
    assert (await (await client.get(base, headers=AUTH)).json())["data"] == []


async def test_upload_over_the_limit_without_content_length_is_413(client) -> None:
    container = await new_container(client)
    base = f"/v1/containers/{container['id']}/files"

    async def chunks():
        for _ in range(10):
            yield os.urandom(1024 * 1024)

    with aiohttp.MultipartWriter("form-data") as writer:
        part = writer.append(chunks())
        part.set_content_disposition("form-data", name="file", filename="big.bin")
    error = await expect_error(await client.post(base, data=writer, headers=AUTH), 413)
    assert error["code"] == "file_too_large"
    assert (await (await client.get(base, headers=AUTH)).json())["data"] == []


async def test_unknown_file_id_is_a_404_naming_it(client) -> None:
    container = await new_container(client)
    response = await client.post(f"/v1/containers/{container['id']}/files", json={"file_id": "file-123"},
                                 headers=AUTH)
    error = await expect_error(response, 404)
    assert error["param"] == "file_id" and "file-123" in error["message"]
    error = await expect_error(await client.post(f"/v1/containers/{container['id']}/files", json={"file_id": 3},
                                                 headers=AUTH), 400)
    assert error["code"] == "invalid_type"


async def test_missing_file_part_is_400(client) -> None:
    container = await new_container(client)
    body = aiohttp.FormData()
    body.add_field("purpose", "nothing")
    body.add_field("other", b"x", filename="x.txt")
    error = await expect_error(await client.post(f"/v1/containers/{container['id']}/files", data=body,
                                                 headers=AUTH), 400)
    assert error["param"] == "file"


async def test_expired_container_file_ops_are_400(client, cluster: FakeCluster) -> None:
    container = await new_container(client)
    (obj,) = cluster.objects.values()
    cluster.set_status("files-tenant", obj["metadata"]["name"], status="expired", podIP=None)
    base = f"/v1/containers/{container['id']}/files"
    for response in [await client.get(base, headers=AUTH), await client.post(base, data=form(b"x"), headers=AUTH),
                     await client.get(f"{base}/cfile_0123", headers=AUTH),
                     await client.get(f"{base}/cfile_0123/content", headers=AUTH),
                     await client.delete(f"{base}/cfile_0123", headers=AUTH)]:
        error = await expect_error(response, 400)
        assert (error["message"], error["type"]) == ("Container is expired.", "invalid_request_error")
    body = await (await client.get(f"/v1/containers/{container['id']}", headers=AUTH)).json()
    assert body["status"] == "expired"


async def test_not_ready_is_503_with_retry_after(client, cluster: FakeCluster) -> None:
    cluster.operator = None
    container = await new_container(client)  # stays pending: no operator
    response = await client.get(f"/v1/containers/{container['id']}/files", headers=AUTH)
    error = await expect_error(response, 503)
    assert response.headers["Retry-After"] == "2" and error["code"] == "container_not_ready"


async def test_unreachable_sidecar_is_503(cluster: FakeCluster) -> None:
    cluster.operator = run_immediately(cluster, pod_ip="127.0.0.1", token=TOKEN)
    client = await start_client(cluster, sidecar_port=9)  # nothing listens on the discard port
    try:
        container = await new_container(client)
        response = await client.get(f"/v1/containers/{container['id']}/files", headers=AUTH)
        await expect_error(response, 503)
        assert "Retry-After" in response.headers
    finally:
        await client.close()


async def test_file_activity_is_recorded(client, cluster: FakeCluster) -> None:
    container = await new_container(client)
    await client.get(f"/v1/containers/{container['id']}/files", headers=AUTH)
    assert cluster.annotations_written, "a file operation counts as activity"


MALFORMED_MULTIPART = [
    ("multipart/form-data", b"no boundary in the content type"),
    ("multipart/form-data; boundary=B", b"no boundary in the body"),
    ("multipart/form-data; boundary=B", b"--B\r\nheader-without-colon\r\n\r\nx\r\n--B--\r\n"),
    ("multipart/form-data; boundary=B", b'--B\r\nContent-Disposition: form-data; name="file"; filename="a"\r\nX-'
     + b"y" * 100_000 + b"\r\n\r\nx\r\n--B--\r\n"),
]


@pytest.mark.parametrize(("content_type", "body"), MALFORMED_MULTIPART)
async def test_a_malformed_multipart_body_is_400(client, content_type: str, body: bytes) -> None:
    container = await new_container(client)
    error = await expect_error(await client.post(f"/v1/containers/{container['id']}/files", data=body,
                                                 headers={**AUTH, "Content-Type": content_type}), 400)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_multipart")


async def test_a_file_id_part_is_read_only_up_to_a_small_limit(client) -> None:
    container = await new_container(client)
    body = (b'--B\r\nContent-Disposition: form-data; name="file_id"\r\n\r\nfile-' + b"a" * 300_000
            + b"\r\n--B--\r\n")
    error = await expect_error(await client.post(f"/v1/containers/{container['id']}/files", data=body, headers={
        **AUTH, "Content-Type": "multipart/form-data; boundary=B"}), 400)
    assert error["param"] == "file_id" and len(error["message"]) < 200


async def test_a_sidecar_that_does_not_accept_the_connection_in_time_is_503(cluster: FakeCluster) -> None:
    # A listener whose accept queue is full: the kernel drops further SYNs, so connecting hangs
    # (as with a pod IP whose pod just went away) until the gateway's connect timeout.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(listener.getsockname())
        fillers.append(filler)
    cluster.operator = run_immediately(cluster, pod_ip="127.0.0.1", token=TOKEN)
    client = await start_client(cluster, sidecar_port=listener.getsockname()[1], sidecar_connect_timeout=0.3)
    try:
        container = await new_container(client)
        response = await client.get(f"/v1/containers/{container['id']}/files", headers=AUTH)
        error = await expect_error(response, 503)
        assert error["code"] == "container_not_ready" and "Retry-After" in response.headers
    finally:
        await client.close()
        for sock in [listener, *fillers]:
            sock.close()


@pytest.mark.parametrize("reply", [
    b'{"data": [], "has_more": false, "padding": "' + b"x" * (8 * 1024 * 1024) + b'"}',  # never read whole
    b'{"data": [{"id": "cfile_x", "path": "/mnt/data/x", "bytes": -1}], "has_more": false}',
    b"not json",
])
async def test_an_oversized_or_invalid_sidecar_reply_is_502(cluster: FakeCluster, reply: bytes) -> None:
    # The sandbox shares the pod's network: if the sidecar is down, something else may answer on its port.
    async def impostor(request: web.Request) -> web.Response:
        return web.Response(body=reply, content_type="application/json")

    app = web.Application()
    app.router.add_get("/files", impostor)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    cluster.operator = run_immediately(cluster, token=TOKEN)
    client = await start_client(cluster, sidecar_port=server.port)
    try:
        container = await new_container(client)
        response = await client.get(f"/v1/containers/{container['id']}/files", headers=AUTH)
        error = await expect_error(response, 502)
        assert error["type"] == "server_error"
    finally:
        await client.close()
        await server.close()


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_sidecar_that_drops_the_connection_mid_upload_is_a_502_not_a_500(cluster: FakeCluster,
                                                                                  how: str) -> None:
    import asyncio

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(64 * 1024)  # the request head (and the start of a body), then it dies
        if how == "reset":
            writer.transport.abort()
        else:
            writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    cluster.operator = run_immediately(cluster, token=TOKEN)
    client = await start_client(cluster, sidecar_port=server.sockets[0].getsockname()[1],
                                max_upload_bytes=8 * 1024 * 1024)
    try:
        container = await new_container(client)
        response = await client.post(f"/v1/containers/{container['id']}/files", data=form(os.urandom(4 * 1024 * 1024)),
                                     headers=AUTH)
        error = await expect_error(response, 502)
        assert error["type"] == "server_error" and error["code"] == "container_connection_lost"
        # and a list call whose reply is cut off
        response = await client.get(f"/v1/containers/{container['id']}/files", headers=AUTH)
        assert (await expect_error(response, 502))["code"] == "container_connection_lost"
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


async def test_a_container_file_name_that_is_not_utf8_is_a_400_and_nothing_is_written(client, sidecar, tmp_path) -> None:
    container = await new_container(client)
    body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\xff\xfe.txt\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\nhello\r\n--B--\r\n")
    response = await client.post(f"/v1/containers/{container['id']}/files", data=body,
                                 headers={**AUTH, "Content-Type": "multipart/form-data; boundary=B"})
    error = await expect_error(response, 400)
    assert error["code"] == "invalid_filename" and error["param"] == "file"
    listing = await (await client.get(f"/v1/containers/{container['id']}/files", headers=AUTH)).json()
    assert listing["data"] == []
    assert [p.name for p in (tmp_path / "data").iterdir() if p.name != ".kontainers"] == []


async def test_another_pods_sidecar_at_the_address_is_not_ready_not_an_error(cluster: FakeCluster,
                                                                             sidecar: TestServer) -> None:
    """A pod IP reused before the old pod's sidecar went: it rejects this container's token."""
    cluster.operator = run_immediately(cluster, token="the-new-pods-token")  # the sidecar knows TOKEN only
    client = await start_client(cluster, sidecar_port=sidecar.port)
    try:
        container = await new_container(client)
        response = await client.get(f"/v1/containers/{container['id']}/files", headers=AUTH)
        error = await expect_error(response, 503)
        assert error["code"] == "container_not_ready" and response.headers["Retry-After"]
        assert "the-new-pods-token" not in str(error) and TOKEN not in str(error)
        # Once the right sidecar answers (here: the Secret now holds the token it knows), calls work.
        meta = next(iter(cluster.objects.values()))["metadata"]
        secret = names.sidecar_secret_name(meta["name"], meta["uid"])
        cluster.secrets[(meta["namespace"], secret)]["data"]["token"] = base64.b64encode(TOKEN.encode()).decode()
        response = await client.get(f"/v1/containers/{container['id']}/files", headers=AUTH)
        assert response.status == 200, await response.text()
    finally:
        await client.close()


# --- downloads: spliced socket to socket where possible, streamed otherwise -------------------

async def _uploaded(client, size: int) -> tuple[str, str, bytes]:
    container = await new_container(client)
    payload = os.urandom(size)
    response = await client.post(f"/v1/containers/{container['id']}/files", data=form(payload), headers=AUTH)
    assert response.status == 200, await response.text()
    return container["id"], (await response.json())["id"], payload


async def test_a_download_is_spliced_and_the_connection_stays_usable(client, monkeypatch) -> None:
    from kontainers.gateway import relay

    spliced: list[int] = []
    real = relay._splice

    async def counting(source: int, target: int, count: int, on_bytes) -> None:
        spliced.append(count)
        await real(source, target, count, on_bytes)

    monkeypatch.setattr(relay, "_splice", counting)
    container_id, file_id, payload = await _uploaded(client, 7 * 1024 * 1024 + 3)
    url = f"/v1/containers/{container_id}/files/{file_id}/content"
    for _ in range(2):  # one keep-alive connection: the second reply must start where the first ended
        response = await client.get(url, headers=AUTH)
        assert response.status == 200 and response.content_length == len(payload)
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert await response.read() == payload
    assert spliced and all(0 < count <= len(payload) for count in spliced)
    listing = await (await client.get(f"/v1/containers/{container_id}/files", headers=AUTH)).json()
    assert [f["id"] for f in listing["data"]] == [file_id]


async def test_a_download_is_streamed_where_splice_is_refused(client, monkeypatch) -> None:
    import errno

    from kontainers.gateway import relay

    def refused(*args, **kwargs):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(relay.os, "splice", refused)
    container_id, file_id, payload = await _uploaded(client, 3 * 1024 * 1024 + 1)
    response = await client.get(f"/v1/containers/{container_id}/files/{file_id}/content", headers=AUTH)
    assert response.status == 200 and await response.read() == payload


async def _raw_sidecar(reply):
    """A sidecar speaking raw HTTP: `reply(writer)` answers each request after its head is read."""
    import asyncio

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                await reply(writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_a_download_takes_only_the_declared_length(cluster: FakeCluster) -> None:
    import asyncio

    body = os.urandom(3 * 1024 * 1024 + 5)

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Disposition: attachment; filename=\"a.bin\"\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body[:1000])
        for start in range(1000, len(body), 512 * 1024):  # in pieces, with pauses: the relay waits on the socket
            await asyncio.sleep(0.01)
            writer.write(body[start:start + 512 * 1024])
        writer.write(b"garbage past the declared length")
        await writer.drain()
        await asyncio.sleep(30)  # the connection stays open: the relay must not wait for its end

    server = await _raw_sidecar(reply)
    cluster.operator = run_immediately(cluster, token=TOKEN)
    client = await start_client(cluster, sidecar_port=server.sockets[0].getsockname()[1])
    try:
        container = await new_container(client)
        response = await asyncio.wait_for(
            client.get(f"/v1/containers/{container['id']}/files/cfile_abc/content", headers=AUTH), 10)
        assert response.status == 200 and response.headers["Content-Disposition"] == 'attachment; filename="a.bin"'
        assert await asyncio.wait_for(response.read(), 10) == body
    finally:
        await client.close()
        server.close()


async def test_a_sidecar_that_stops_mid_download_cuts_the_reply(cluster: FakeCluster) -> None:
    import asyncio

    async def reply(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 4194304\r\n\r\n")
        writer.write(os.urandom(1024 * 1024))
        await writer.drain()
        await asyncio.sleep(0.05)
        raise ConnectionError("the sidecar went away")  # closes the connection short of the length

    server = await _raw_sidecar(reply)
    cluster.operator = run_immediately(cluster, token=TOKEN)
    client = await start_client(cluster, sidecar_port=server.sockets[0].getsockname()[1])
    try:
        container = await new_container(client)
        response = await client.get(f"/v1/containers/{container['id']}/files/cfile_abc/content", headers=AUTH)
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(response.read(), 10)
        healthy = await client.get(f"/v1/containers/{container['id']}", headers=AUTH)
        assert healthy.status == 200
    finally:
        await client.close()
        server.close()
