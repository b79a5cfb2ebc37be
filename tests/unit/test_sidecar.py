"""The files sidecar against a temporary root, through its HTTP API (aiohttp test client)."""

from __future__ import annotations

import asyncio
import io
import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from kontainers.sidecar.app import SidecarConfig, create_app

TOKEN = "unit-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 1024 * 1024


def make_client(root: Path, limit: int = LIMIT) -> TestClient:
    config = SidecarConfig(root=root, token=TOKEN, max_upload_bytes=limit, skills_root=root.parent / "skills")
    return TestClient(TestServer(create_app(config)))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def client(root: Path):
    async with make_client(root) as client:
        yield client


async def upload(client: TestClient, name: str, data: bytes = b"hello", status: int = 201) -> dict:
    resp = await client.put("/files", params={"name": name}, data=data, headers=AUTH)
    body = await resp.json()
    assert resp.status == status, body
    return body


async def list_all(client: TestClient, **params) -> list[dict]:
    resp = await client.get("/files", params={"limit": "100", **params}, headers=AUTH)
    assert resp.status == 200
    return (await resp.json())["data"]


def visible(root: Path) -> list[str]:
    """What the sandbox would see in /mnt/data (the hidden metadata directory aside)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".kontainers" not in p.parts)


def leftovers(root: Path) -> list[str]:
    return os.listdir(root / ".kontainers" / "tmp")


def assert_error(body: dict, param: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param


# --- auth ------------------------------------------------------------------------------------------


async def test_healthz_needs_no_token(client):
    resp = await client.get("/healthz")
    assert resp.status == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Bearer {TOKEN}x"}],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/files"), ("PUT", "/files?name=a"), ("GET", "/files/cfile_x")])
async def test_everything_else_needs_the_token(client, root, headers, method, path):
    resp = await client.request(method, path, headers=headers, data=b"x" if method == "PUT" else None)
    assert resp.status == 401
    assert resp.content_type == "application/json"
    assert_error(await resp.json())
    assert visible(root) == []


async def test_unknown_route_is_an_openai_error(client):
    resp = await client.get("/nope", headers=AUTH)
    assert resp.status == 404
    assert_error(await resp.json())


# --- the protocol ---------------------------------------------------------------------------------


async def test_upload_read_list_delete_round_trip(client, root):
    data = os.urandom(300_000)
    record = await upload(client, "report.bin", data)
    assert record["id"].startswith("cfile_") and len(record["id"]) == 6 + 32
    assert record["path"] == "/mnt/data/report.bin"
    assert record["bytes"] == len(data)
    assert record["source"] == "user"
    assert isinstance(record["created_at"], int)
    assert (root / "report.bin").read_bytes() == data

    resp = await client.get(f"/files/{record['id']}", headers=AUTH)
    assert await resp.json() == record
    resp = await client.get(f"/files/{record['id']}/content", headers=AUTH)
    assert resp.status == 200 and await resp.read() == data
    assert await list_all(client) == [record]

    resp = await client.delete(f"/files/{record['id']}", headers=AUTH)
    assert resp.status == 204
    assert visible(root) == []
    for path in (f"/files/{record['id']}", f"/files/{record['id']}/content"):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 404
        assert_error(await resp.json(), "file_id")
    resp = await client.delete(f"/files/{record['id']}", headers=AUTH)
    assert resp.status == 404


async def test_sub_directories_are_made(client, root):
    record = await upload(client, "out/2024/plot.png", b"png")
    assert record["path"] == "/mnt/data/out/2024/plot.png"
    assert (root / "out" / "2024" / "plot.png").read_bytes() == b"png"


async def test_uploading_a_name_again_replaces_the_file_under_a_new_id(client, root):
    first = await upload(client, "a.txt", b"one")
    second = await upload(client, "a.txt", b"two")
    assert second["id"] != first["id"]
    assert (root / "a.txt").read_bytes() == b"two"
    assert [r["id"] for r in await list_all(client)] == [second["id"]]
    resp = await client.get(f"/files/{first['id']}", headers=AUTH)
    assert resp.status == 404


async def test_pagination_after_limit_order(client):
    ids = [(await upload(client, f"f{i}.txt"))["id"] for i in range(5)]
    resp = await client.get("/files", params={"limit": "2", "order": "asc"}, headers=AUTH)
    page = await resp.json()
    assert [r["id"] for r in page["data"]] == ids[:2] and page["has_more"] is True
    resp = await client.get("/files", params={"limit": "2", "order": "asc", "after": ids[1]}, headers=AUTH)
    page = await resp.json()
    assert [r["id"] for r in page["data"]] == ids[2:4] and page["has_more"] is True
    resp = await client.get("/files", params={"limit": "2", "order": "asc", "after": ids[3]}, headers=AUTH)
    page = await resp.json()
    assert [r["id"] for r in page["data"]] == ids[4:] and page["has_more"] is False
    # desc is the default order
    assert [r["id"] for r in await list_all(client)] == ids[::-1]
    desc_after = await list_all(client, after=ids[2])
    assert [r["id"] for r in desc_after] == ids[:2][::-1]


@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"),
     ({"order": "up"}, "order"), ({"after": "cfile_nope"}, "after")],
)
async def test_bad_list_parameters_are_400_naming_them(client, params, param):
    resp = await client.get("/files", params=params, headers=AUTH)
    assert resp.status == 400
    assert_error(await resp.json(), param)


# --- names that must not escape ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "", "../escape.txt", "a/../../escape.txt", "a/..", "/etc/passwd", "/tmp/x", "./x", "a//b", "a/",
        "bad\x00name", "new\nline", "tab\tname", "del\x7f", "x" * 256, "a/" * 600 + "b",
        ".kontainers/records/evil", ".kontainers",
    ],
)
async def test_unsafe_names_are_refused(client, root, tmp_path, name):
    resp = await client.put("/files", params={"name": name}, data=b"payload", headers=AUTH)
    assert resp.status == 400
    assert_error(await resp.json(), "file")
    assert visible(root) == []
    assert not (tmp_path / "escape.txt").exists()
    assert leftovers(root) == []
    assert os.listdir(root / ".kontainers" / "records") == []


# --- symlinks -----------------------------------------------------------------------------------


async def test_upload_through_a_symlinked_directory_is_refused(client, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "evil").symlink_to(outside)
    resp = await client.put("/files", params={"name": "evil/planted.txt"}, data=b"x", headers=AUTH)
    assert resp.status == 400
    assert_error(await resp.json(), "file")
    assert list(outside.iterdir()) == []
    assert leftovers(root) == []


async def test_symlinks_out_of_the_root_are_never_listed_or_served(client, root, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (root / "leak.txt").symlink_to(secret)
    (root / "leakdir").symlink_to(tmp_path)
    (root / "relative.txt").symlink_to("../secret.txt")
    assert await list_all(client) == []


async def test_a_file_swapped_for_an_outward_symlink_is_not_served(client, root, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    record = await upload(client, "data.csv", b"a,b\n")
    (root / "data.csv").unlink()
    (root / "data.csv").symlink_to(secret)
    resp = await client.get(f"/files/{record['id']}/content", headers=AUTH)
    assert resp.status == 404
    assert b"top secret" not in await resp.read()
    # and deleting it removes the link, never the target
    await client.delete(f"/files/{record['id']}", headers=AUTH)
    assert secret.read_text() == "top secret"


async def test_a_directory_swapped_for_an_outward_symlink_is_not_served(client, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.txt").write_text("outside")
    record = await upload(client, "sub/x.txt", b"inside")
    (root / "sub" / "x.txt").unlink()
    (root / "sub").rmdir()
    (root / "sub").symlink_to(outside)
    resp = await client.get(f"/files/{record['id']}/content", headers=AUTH)
    assert resp.status == 404


async def test_symlinks_inside_the_root_are_assistant_files(client, root):
    (root / "real.txt").write_text("real")
    (root / "alias.txt").symlink_to("real.txt")
    by_path = {r["path"]: r for r in await list_all(client)}
    assert set(by_path) == {"/mnt/data/real.txt", "/mnt/data/alias.txt"}
    resp = await client.get(f"/files/{by_path['/mnt/data/alias.txt']['id']}/content", headers=AUTH)
    assert await resp.read() == b"real"


async def test_the_metadata_directory_is_never_listed(client, root):
    await upload(client, "a.txt")
    paths = [r["path"] for r in await list_all(client)]
    assert paths == ["/mnt/data/a.txt"]


# --- size limit ----------------------------------------------------------------------------------


async def test_oversize_upload_with_content_length_is_413_and_leaves_nothing(client, root):
    resp = await client.put("/files", params={"name": "big.bin"}, data=b"x" * (LIMIT + 1), headers=AUTH)
    assert resp.status == 413
    assert_error(await resp.json(), "file")
    assert visible(root) == [] and leftovers(root) == []


async def test_oversize_streamed_upload_is_413_and_leaves_nothing(client, root):
    async def body():
        for _ in range(8):
            yield b"x" * (LIMIT // 4)  # chunked: no Content-Length to refuse early

    resp = await client.put("/files", params={"name": "big.bin"}, data=body(), headers=AUTH)
    assert resp.status == 413
    assert_error(await resp.json())
    assert visible(root) == [] and leftovers(root) == []
    assert os.listdir(root / ".kontainers" / "records") == []


async def test_an_upload_of_exactly_the_limit_is_accepted(client, root):
    record = await upload(client, "edge.bin", b"x" * LIMIT)
    assert record["bytes"] == LIMIT


# --- atomicity -------------------------------------------------------------------------------------


async def test_a_client_that_disconnects_mid_upload_leaves_nothing(client, root):
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"PUT /files?name=partial.bin HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {LIMIT}\r\n\r\n".encode()
        + b"x" * (LIMIT // 2)
    )
    await writer.drain()
    tmp = root / ".kontainers" / "tmp"
    for _ in range(100):  # wait until the upload is being written
        if any((tmp / name).stat().st_size for name in os.listdir(tmp)):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the upload never reached a temporary file")
    assert visible(root) == []  # in flight: not visible yet
    writer.close()
    for _ in range(100):
        if not leftovers(root):
            break
        await asyncio.sleep(0.02)
    assert leftovers(root) == []
    assert visible(root) == []
    assert await list_all(client) == []


# --- restart and the sandbox's own files ------------------------------------------------------------


async def test_a_restart_keeps_ids_and_metadata(root):
    async with make_client(root) as client:
        uploaded = await upload(client, "keep.txt", b"kept")
        (root / "made-by-code.txt").write_text("assistant output")
        before = await list_all(client, order="asc")
    async with make_client(root) as client:
        after = await list_all(client, order="asc")
        assert after == before
        assert {r["source"] for r in after} == {"user", "assistant"}
        resp = await client.get(f"/files/{uploaded['id']}/content", headers=AUTH)
        assert await resp.read() == b"kept"


async def test_files_written_by_the_sandbox_are_assistant_files(client, root):
    (root / "result.csv").write_text("x,y\n1,2\n")
    (root / "plots").mkdir()
    (root / "plots" / "fig.png").write_bytes(b"\x89PNG")
    listed = {r["path"]: r for r in await list_all(client)}
    assert set(listed) == {"/mnt/data/result.csv", "/mnt/data/plots/fig.png"}
    assert {r["source"] for r in listed.values()} == {"assistant"}
    csv = listed["/mnt/data/result.csv"]
    assert csv["bytes"] == 8
    # ids are stable across listings, and sizes follow the file
    (root / "result.csv").write_text("x,y\n1,2\n3,4\n")
    again = {r["path"]: r for r in await list_all(client)}
    assert again["/mnt/data/result.csv"]["id"] == csv["id"]
    assert again["/mnt/data/result.csv"]["bytes"] == 12
    resp = await client.get(f"/files/{csv['id']}/content", headers=AUTH)
    assert await resp.read() == b"x,y\n1,2\n3,4\n"
    # removed by the sandbox: gone from the API too
    (root / "result.csv").unlink()
    assert "/mnt/data/result.csv" not in {r["path"] for r in await list_all(client)}
    resp = await client.get(f"/files/{csv['id']}", headers=AUTH)
    assert resp.status == 404


async def test_garbage_in_the_records_directory_is_ignored(root):
    async with make_client(root) as client:
        good = await upload(client, "good.txt")
    records = root / ".kontainers" / "records"
    (records / ("cfile_" + "0" * 32)).write_text("{not json")
    (records / "not-an-id").write_text("{}")
    (records / ("cfile_" + "1" * 32)).write_text('{"id": "cfile_' + "1" * 32 + '", "path": "../../etc/passwd",'
                                                   ' "bytes": 1, "source": "user", "created_at": 1}')
    async with make_client(root) as client:
        assert [r["id"] for r in await list_all(client)] == [good["id"]]


async def test_paging_after_a_file_deleted_meanwhile_goes_on(client):
    ids = [(await upload(client, f"f{i}.txt"))["id"] for i in range(4)]
    resp = await client.delete(f"/files/{ids[1]}", headers=AUTH)
    assert resp.status == 204
    resp = await client.get("/files", params={"order": "asc", "after": ids[1]}, headers=AUTH)
    assert [r["id"] for r in (await resp.json())["data"]] == ids[2:]


# --- skills ----------------------------------------------------------------------------------------


def skill_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


async def test_a_skill_bundle_is_unpacked_under_the_skills_root(client, root):
    bundle = skill_zip({"csv-tools/SKILL.md": b"# CSV tools", "csv-tools/bin/run.py": b"print(1)"})
    resp = await client.put("/skills", data=bundle, headers=AUTH)
    assert resp.status == 201, await resp.text()
    assert await resp.json() == {"name": "csv-tools", "path": "/mnt/skills/csv-tools"}
    skills = root.parent / "skills"
    assert (skills / "csv-tools" / "SKILL.md").read_bytes() == b"# CSV tools"
    # a newer bundle of the same folder replaces the old copy
    resp = await client.put("/skills", data=skill_zip({"csv-tools/SKILL.md": b"v2"}), headers=AUTH)
    assert resp.status == 201
    assert sorted(p.name for p in (skills / "csv-tools").iterdir()) == ["SKILL.md"]
    assert visible(root) == []  # skills never show up as container files


@pytest.mark.parametrize(
    "files",
    [{"loose.md": b"x"}, {"a/README.md": b"x"}, {"a/SKILL.md": b"x", "b/SKILL.md": b"y"}, {"../a/SKILL.md": b"x"}],
)
async def test_bad_skill_bundles_are_400_and_write_nothing(client, root, files):
    resp = await client.put("/skills", data=skill_zip(files), headers=AUTH)
    assert resp.status == 400
    assert_error(await resp.json())
    skills = root.parent / "skills"
    assert not skills.exists() or list(skills.iterdir()) == []


async def test_a_skill_bundle_over_the_limit_is_413_and_needs_the_token(client):
    resp = await client.put("/skills", data=b"zip", headers={})
    assert resp.status == 401
    resp = await client.put("/skills", data=b"x" * (50 * 1024 * 1024 + 1), headers=AUTH)
    assert resp.status == 413
    assert_error(await resp.json())


async def test_a_directory_swapped_for_an_outward_symlink_during_a_scan_is_not_entered(client, root, tmp_path,
                                                                                      monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside the root")
    (root / "sub").mkdir()
    (root / "sub" / "x.txt").write_text("inside")
    real_scandir = os.scandir
    swapped = []

    def scandir_then_swap(path):
        entries = list(real_scandir(path))
        if not swapped and any(entry.name == "sub" for entry in entries):
            # The sandbox's move, between the scan seeing a directory and entering it.
            (root / "sub").rename(root / "moved")
            (root / "sub").symlink_to(outside)
            swapped.append(True)
        return iter(entries)

    monkeypatch.setattr(os, "scandir", scandir_then_swap)
    listed = {r["path"] for r in await list_all(client)}
    assert swapped and "/mnt/data/sub/secret.txt" not in listed


async def test_a_skill_bundle_is_spooled_to_disk_not_held_in_memory(client, root):
    # The sidecar runs with a small memory limit (256Mi by default) and bundles may be 50 MB.
    bundle = skill_zip({"big/SKILL.md": b"# big", "big/data.bin": os.urandom(20 * 1024 * 1024)})

    async def chunks():  # as the gateway sends it, streamed from its file store
        for start in range(0, len(bundle), 256 * 1024):
            yield bundle[start:start + 256 * 1024]

    tracemalloc.start()
    try:
        resp = await client.put("/skills", data=chunks(), headers=AUTH)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert resp.status == 201, await resp.text()
    assert peak < 10 * 1024 * 1024, f"peak {peak} bytes for a {len(bundle)}-byte bundle"
    skills = root.parent / "skills"
    assert (skills / "big" / "data.bin").stat().st_size == 20 * 1024 * 1024
    assert sorted(p.name for p in skills.iterdir()) == ["big"]  # no spool file left behind


async def test_temp_files_no_upload_is_writing_are_swept_but_a_live_uploads_is_kept(tmp_path) -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from kontainers.sidecar.app import SidecarConfig, create_app

    root = tmp_path / "data"
    root.mkdir()
    app = create_app(SidecarConfig(root=root, token="t", max_upload_bytes=1024 * 1024, temp_sweep_seconds=0.05))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        tmp = root / ".kontainers" / "tmp"
        leftover = tmp / "0123.part"
        leftover.write_bytes(b"x" * 100)  # an upload whose cleanup failed
        gate = asyncio.Event()

        async def body():
            yield b"live-"
            await gate.wait()
            yield b"upload"

        upload = asyncio.create_task(client.put("/files", params={"name": "slow.txt"}, data=body(),
                                                headers={"Authorization": "Bearer t"}))
        await asyncio.sleep(0.5)  # many sweeps
        assert not leftover.exists()
        assert len(list(tmp.iterdir())) == 1  # the live upload's temp file
        gate.set()
        reply = await upload
        assert reply.status == 201, await reply.text()
        assert (root / "slow.txt").read_bytes() == b"live-upload" and list(tmp.iterdir()) == []
