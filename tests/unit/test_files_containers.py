"""file_ids, skills and file_id at the gateway: checked before anything is written, copied via the sidecar.

The gateway app runs with a faked kube layer, a real files sidecar app on loopback and a
directory file store; the openai SDK is the client.
"""

from __future__ import annotations

import base64
import io
import os
import zipfile

import openai
import pytest
from aiohttp.test_utils import TestServer

from fixtures.gateway_fake import FakeCluster, gateway_test_settings, run_immediately
from kontainers.gateway.app import create_app
from kontainers.settings import FilesSettings
from kontainers.sidecar.app import SidecarConfig, create_app as sidecar_app

KEY_A, KEY_B = "sk-a", "sk-b"
TOKEN = "sidecar-token-for-tests"


def skill_zip(folder: str = "hello", extra: dict[str, bytes] | None = None) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        # A fixed timestamp: two calls make the same bytes, even across a clock tick.
        for name, data in {f"{folder}/SKILL.md": b"---\nname: hello\n---\nSay hello.\n", **(extra or {})}.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return base64.b64encode(buffer.getvalue()).decode()


def inline(data: str, name: str = "hello") -> dict:
    return {"type": "inline", "name": name, "description": "says hello",
            "source": {"type": "base64", "media_type": "application/zip", "data": data}}


@pytest.fixture
async def env(tmp_path):
    (tmp_path / "data").mkdir()
    sidecar = TestServer(sidecar_app(SidecarConfig(root=tmp_path / "data", token=TOKEN,
                                                   max_upload_bytes=64 * 1024 * 1024)), host="127.0.0.1")
    await sidecar.start_server()
    cluster = FakeCluster()
    cluster.add_key(KEY_A, "tenant-a")
    cluster.add_key(KEY_B, "tenant-b")
    cluster.operator = run_immediately(cluster, token=TOKEN)
    app = create_app(gateway_test_settings(sidecar_port=sidecar.port), cluster=cluster,
                     files=FilesSettings(root=tmp_path / "files"))
    gateway = TestServer(app, host="127.0.0.1")
    await gateway.start_server()
    yield gateway, cluster, tmp_path
    await gateway.close()
    await sidecar.close()


def sdk(gateway: TestServer, key: str = KEY_A) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key=key, max_retries=0)


async def test_unknown_and_foreign_file_ids_are_404_and_nothing_is_created(env) -> None:
    gateway, cluster, _ = env
    foreign = await sdk(gateway, KEY_B).files.create(file=("b.txt", b"b"), purpose="user_data")
    mine = await sdk(gateway).files.create(file=("a.txt", b"a"), purpose="user_data")
    for bad in ("file-00000000000000000000000000000", foreign.id, "not-a-file-id"):
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk(gateway).containers.create(name="c", file_ids=[mine.id, bad])
        assert bad in caught.value.message and caught.value.body["param"] == "file_ids[1]"
    assert cluster.objects == {}


async def test_file_ids_land_in_the_spec(env) -> None:
    gateway, cluster, _ = env
    client = sdk(gateway)
    ids = [(await client.files.create(file=(f"{i}.txt", b"x"), purpose="user_data")).id for i in range(3)]
    await client.containers.create(name="with-files", file_ids=ids)
    (obj,) = cluster.objects.values()
    assert obj["spec"]["fileIds"] == ids


async def test_container_files_create_with_file_id_copies_the_bytes(env) -> None:
    gateway, _, tmp_path = env
    client = sdk(gateway)
    payload = os.urandom(3 * 1024 * 1024 + 5)
    stored = await client.files.create(file=("report.bin", payload), purpose="user_data")
    container = await client.containers.create(name="copy")
    copied = await client.containers.files.create(container.id, file_id=stored.id)
    assert (copied.object, copied.container_id, copied.path, copied.bytes, copied.source) == (
        "container.file", container.id, "/mnt/data/report.bin", len(payload), "user")
    assert (tmp_path / "data" / "report.bin").read_bytes() == payload
    content = await client.containers.files.content.retrieve(copied.id, container_id=container.id)
    assert content.read() == payload
    assert [f.id async for f in client.containers.files.list(container.id)] == [copied.id]

    foreign = await sdk(gateway, KEY_B).files.create(file=("b.txt", b"b"), purpose="user_data")
    with pytest.raises(openai.NotFoundError) as caught:
        await client.containers.files.create(container.id, file_id=foreign.id)
    assert foreign.id in caught.value.message


async def test_inline_skills_are_checked_kept_and_referenced(env) -> None:
    gateway, cluster, tmp_path = env
    client = sdk(gateway)
    await client.containers.create(name="skilled", skills=[inline(skill_zip())])
    (obj,) = cluster.objects.values()
    (entry,) = obj["spec"]["skills"]
    assert (entry["type"], entry["name"], entry["description"]) == ("inline", "hello", "says hello")
    bundle_id = entry["bundle"]["fileId"]
    assert bundle_id.startswith("skill-") and len(entry["bundle"]["sha256"]) == 64
    assert (tmp_path / "files" / "tenant-a" / bundle_id).read_bytes() == base64.b64decode(skill_zip())
    assert [f async for f in client.files.list()] == []  # bundles are not Files API files
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(bundle_id)


@pytest.mark.parametrize(("skill", "param", "needle"), [
    (inline(skill_zip(extra={"hello/../../evil.sh": b"x"})), "skills[0].source.data", "escapes"),
    (inline(skill_zip(extra={"other/SKILL.md": b"x"})), "skills[0].source.data", "top-level folder"),
    (inline(base64.b64encode(b"not a zip").decode()), "skills[0].source.data", "zip"),
])
async def test_bad_skills_are_400_and_nothing_is_written(env, skill: dict, param: str, needle: str) -> None:
    gateway, cluster, tmp_path = env
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).containers.create(name="bad", skills=[skill])
    assert caught.value.body["param"] == param and needle in caught.value.message
    assert cluster.objects == {}
    assert not (tmp_path / "files" / "tenant-a").exists()


async def test_two_skills_unpacking_to_one_folder_are_refused(env) -> None:
    gateway, cluster, _ = env
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).containers.create(name="dup", skills=[inline(skill_zip()), inline(skill_zip(), "again")])
    assert caught.value.body["param"] == "skills[1]"
    assert cluster.objects == {}


async def test_too_many_file_ids(env) -> None:
    gateway, cluster, _ = env
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(gateway).containers.create(name="many", file_ids=[f"file-{i}" for i in range(101)])
    assert caught.value.body["param"] == "file_ids"
    assert cluster.objects == {}
