"""`/v1/skills` through the official openai SDK, against the gateway app on loopback (kube faked).

Every case runs on both store backends: a directory and a real S3-compatible server (versitygw).
"""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer

from fixtures.gateway_fake import FakeCluster, gateway_test_settings, run_immediately
from fixtures.s3 import files_settings_for
from kontainers.gateway.app import create_app
from kontainers.settings import FilesSettings

KEY_A, KEY_B = "sk-skills-a", "sk-skills-b"


def bundle(folder: str = "csv-tools", *, name: str | None = None, description: str = "CSV helpers",
           extra: dict[str, bytes] | None = None, body: bytes = b"Use it.\n") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{folder}/SKILL.md", b"---\nname: %s\ndescription: %s\n---\n" % (
            (name or folder).encode(), description.encode()) + body)
        for path, data in (extra or {}).items():
            archive.writestr(path, data)
    return buffer.getvalue()


@pytest.fixture(params=["filesystem", "s3"])
def files_settings(request: pytest.FixtureRequest, tmp_path: Path) -> FilesSettings:
    return files_settings_for(request, request.param, tmp_path)


@pytest.fixture
async def env(files_settings: FilesSettings):
    cluster = FakeCluster()
    cluster.add_key(KEY_A, "tenant-a")
    cluster.add_key(KEY_B, "tenant-b")
    cluster.operator = run_immediately(cluster)
    app = create_app(gateway_test_settings(), cluster=cluster, files=files_settings)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, cluster
    await server.close()


def sdk(server: TestServer, key: str = KEY_A) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(server.make_url("/v1")), api_key=key, max_retries=0)


async def test_create_from_a_zip_and_read_it_back(env) -> None:
    server, _ = env
    client = sdk(server)
    data = bundle(extra={"csv-tools/scripts/summarise.py": b"print('summary')\n"})
    skill = await client.skills.create(files=[("csv-tools.zip", data, "application/zip")])
    assert skill.id.startswith("skill_") and skill.object == "skill"
    assert (skill.name, skill.description, skill.default_version, skill.latest_version) == (
        "csv-tools", "CSV helpers", "1", "1")
    assert await client.skills.retrieve(skill.id) == skill
    assert (await client.skills.content.retrieve(skill.id)).read() == data
    version = await client.skills.versions.retrieve("1", skill_id=skill.id)
    assert (version.object, version.skill_id, version.version, version.name) == (
        "skill.version", skill.id, "1", "csv-tools")
    assert version.id.startswith("skillver_")
    assert (await client.skills.versions.content.retrieve("1", skill_id=skill.id)).read() == data
    # Bundles are kept as the tenant's hidden skill files: never Files API files.
    assert [f async for f in client.files.list()] == []


async def test_one_zip_in_a_plain_files_field(env) -> None:
    """`curl -F files=@x.zip` (openai-python 2.54.0 sends a lone file as `files[]` instead)."""
    server, _ = env
    data = bundle("plain")
    form = aiohttp.FormData()
    form.add_field("files", data, filename="plain.zip", content_type="application/octet-stream")
    async with aiohttp.ClientSession() as session:
        async with session.post(server.make_url("/v1/skills"), data=form,
                                headers={"Authorization": f"Bearer {KEY_A}"}) as reply:
            assert reply.status == 200, await reply.text()
            skill = await reply.json()
    assert (skill["object"], skill["name"], skill["default_version"]) == ("skill", "plain", "1")
    assert (await sdk(server).skills.content.retrieve(skill["id"])).read() == data


async def test_create_from_the_files_of_one_folder(env) -> None:
    server, _ = env
    client = sdk(server)
    skill = await client.skills.create(files=[
        ("basic-math/SKILL.md", b"---\nname: basic-math\ndescription: Add or multiply numbers.\n---\nAdd.\n",
         "text/markdown"),
        ("basic-math/calc.py", b"print(1 + 1)\n", "text/plain"),
    ])
    assert (skill.name, skill.description) == ("basic-math", "Add or multiply numbers.")
    content = (await client.skills.content.retrieve(skill.id)).read()
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert sorted(archive.namelist()) == ["basic-math/SKILL.md", "basic-math/calc.py"]
        assert archive.read("basic-math/calc.py") == b"print(1 + 1)\n"


@pytest.mark.parametrize(("files", "needle"), [
    ([("bad.zip", b"not a zip", "application/zip")], "zip"),
    ([("two.zip", bundle(extra={"other/x.txt": b"x"}), "application/zip")], "top-level folder"),
    ([("evil.zip", bundle(extra={"csv-tools/../../evil.sh": b"x"}), "application/zip")], "escapes"),
    ([("a/notes.txt", b"no manifest")], "SKILL.md"),
    ([("a/SKILL.md", b"x"), ("b/SKILL.md", b"y")], "top-level folder"),
    ([("a/SKILL.md", b"x"), ("a/SKILL.md", b"y")], "twice"),
    ([("../x/SKILL.md", b"x")], "escapes"),  # (aiohttp itself makes a leading "/" relative)
])
async def test_bad_bundles_are_refused_like_inline_skills(env, files, needle: str) -> None:
    server, cluster = env
    client = sdk(server)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.skills.create(files=files)
    error = caught.value.body
    assert (error["param"], error["code"]) == ("files", "invalid_skill_bundle") and needle in error["message"]
    assert error["message"].startswith("Invalid skill bundle: ")
    assert [s async for s in client.skills.list()] == []
    # The same zip inline is refused with the same words.
    if files[0][0].endswith(".zip"):
        inline = {"type": "inline", "name": "x", "description": "x",
                  "source": {"type": "base64", "media_type": "application/zip",
                             "data": base64.b64encode(files[0][1]).decode()}}
        with pytest.raises(openai.BadRequestError) as inline_caught:
            await client.containers.create(name="inline", skills=[inline])
        assert inline_caught.value.body["message"] == error["message"]
        assert inline_caught.value.body["code"] == error["code"]
    assert cluster.objects == {}


async def test_missing_files_and_unknown_fields(env) -> None:
    server, _ = env
    headers = {"Authorization": f"Bearer {KEY_A}"}
    async with aiohttp.ClientSession() as session:
        form = aiohttp.FormData()
        form.add_field("other", b"x", filename="x")
        async with session.post(server.make_url("/v1/skills"), data=form, headers=headers) as reply:
            assert reply.status == 400 and (await reply.json())["error"]["param"] == "other"
        async with session.post(server.make_url("/v1/skills"), json={}, headers=headers) as reply:
            assert reply.status == 400 and (await reply.json())["error"]["param"] == "files"
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("default", "true")
        async with session.post(server.make_url("/v1/skills"), data=form, headers=headers) as reply:
            assert reply.status == 400 and (await reply.json())["error"]["param"] == "default"


async def test_list_pages_by_creation(env) -> None:
    server, _ = env
    client = sdk(server)
    ids = [(await client.skills.create(files=[(f"s{i}.zip", bundle(f"s{i}"), "application/zip")])).id
           for i in range(5)]
    assert [s.id async for s in client.skills.list(limit=2)] == ids[::-1]
    assert [s.id async for s in client.skills.list(limit=2, order="asc")] == ids
    page = await client.skills.list(limit=2, order="asc")
    assert [s.id for s in page.data] == ids[:2] and page.has_more
    last = await client.skills.list(limit=2, order="asc", after=ids[2])
    assert [s.id for s in last.data] == ids[3:] and not last.has_more
    await client.skills.delete(ids[2])  # a deleted skill's id still works as a cursor
    assert [s.id for s in (await client.skills.list(order="asc", after=ids[2])).data] == ids[3:]
    with pytest.raises(openai.BadRequestError) as caught:
        await client.skills.list(after="nope")
    assert caught.value.body["param"] == "after"


async def test_versions_update_and_delete(env) -> None:
    server, _ = env
    client = sdk(server)
    v1 = bundle(description="first")
    skill = await client.skills.create(files=[("v1.zip", v1, "application/zip")])
    v2 = bundle(description="second", extra={"csv-tools/new.py": b"new\n"})
    second = await client.skills.versions.create(skill.id, files=[("v2.zip", v2, "application/zip")])
    assert (second.version, second.description, second.skill_id) == ("2", "second", skill.id)
    current = await client.skills.retrieve(skill.id)
    assert (current.default_version, current.latest_version, current.description) == ("1", "2", "first")
    third = await client.skills.versions.create(skill.id, files=[("csv-tools/SKILL.md", b"plain")], default=True)
    assert third.version == "3"
    current = await client.skills.retrieve(skill.id)
    assert (current.default_version, current.latest_version, current.description) == ("3", "3", "")
    listed = [v async for v in client.skills.versions.list(skill.id, order="asc")]
    assert [v.version for v in listed] == ["1", "2", "3"]
    assert [v.version async for v in client.skills.versions.list(skill.id)] == ["3", "2", "1"]
    page = await client.skills.versions.list(skill.id, order="asc", limit=1, after=listed[0].id)
    assert [v.version for v in page.data] == ["2"] and page.has_more

    updated = await client.skills.update(skill.id, default_version="2")
    assert (updated.default_version, updated.description) == ("2", "second")
    assert (await client.skills.content.retrieve(skill.id)).read() == v2
    for bad in ("9", "zero", "0"):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.skills.update(skill.id, default_version=bad)
        assert caught.value.body["param"] == "default_version"

    with pytest.raises(openai.BadRequestError) as caught:
        await client.skills.versions.delete("2", skill_id=skill.id)  # the default
    assert caught.value.body["param"] == "version"
    gone = await client.skills.versions.delete("3", skill_id=skill.id)
    assert (gone.object, gone.deleted, gone.version, gone.id) == ("skill.version.deleted", True, "3", third.id)
    assert (await client.skills.retrieve(skill.id)).latest_version == "2"
    with pytest.raises(openai.NotFoundError) as caught:
        await client.skills.versions.retrieve("3", skill_id=skill.id)
    assert caught.value.body["param"] == "version"
    fourth = await client.skills.versions.create(skill.id, files=[("v4.zip", v1, "application/zip")])
    assert fourth.version == "4"  # numbers are never reused
    assert (await client.skills.versions.retrieve("latest", skill_id=skill.id)).version == "4"

    deleted = await client.skills.delete(skill.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (skill.id, "skill.deleted", True)
    for call in (lambda: client.skills.retrieve(skill.id), lambda: client.skills.delete(skill.id),
                 lambda: client.skills.versions.list(skill.id), lambda: client.skills.content.retrieve(skill.id)):
        with pytest.raises(openai.NotFoundError):
            await call()


async def test_skills_of_one_tenant_are_invisible_to_another(env) -> None:
    server, cluster = env
    alice, bob = sdk(server), sdk(server, KEY_B)
    skill = await alice.skills.create(files=[("a.zip", bundle(), "application/zip")])
    assert [s async for s in bob.skills.list()] == []
    for call in (lambda: bob.skills.retrieve(skill.id), lambda: bob.skills.update(skill.id, default_version="1"),
                 lambda: bob.skills.delete(skill.id), lambda: bob.skills.content.retrieve(skill.id),
                 lambda: bob.skills.versions.create(skill.id, files=[("b.zip", bundle(), "application/zip")]),
                 lambda: bob.skills.versions.list(skill.id),
                 lambda: bob.skills.versions.retrieve("1", skill_id=skill.id),
                 lambda: bob.skills.versions.delete("1", skill_id=skill.id),
                 lambda: bob.skills.versions.content.retrieve("1", skill_id=skill.id)):
        with pytest.raises(openai.NotFoundError) as caught:
            await call()
        assert skill.id in caught.value.message
    with pytest.raises(openai.NotFoundError) as caught:
        await bob.containers.create(name="steal", skills=[{"type": "skill_reference", "skill_id": skill.id}])
    assert caught.value.body["param"] == "skills[0].skill_id"
    assert cluster.objects == {}
    assert (await alice.skills.retrieve(skill.id)).id == skill.id


async def test_skill_reference_pins_the_resolved_version(env) -> None:
    server, cluster = env
    client = sdk(server)
    skill = await client.skills.create(files=[("v1.zip", bundle(description="one"), "application/zip")])
    await client.skills.versions.create(skill.id, files=[("v2.zip", bundle(description="two"), "application/zip")])
    inline = {"type": "inline", "name": "other", "description": "inline one",
              "source": {"type": "base64", "media_type": "application/zip",
                         "data": base64.b64encode(bundle("other")).decode()}}
    versions = {v.version: v async for v in client.skills.versions.list(skill.id)}
    for requested, expected in ((None, "1"), ("latest", "2"), ("2", "2"), ("1", "1")):
        reference = {"type": "skill_reference", "skill_id": skill.id}
        if requested:
            reference["version"] = requested
        container = await client.containers.create(name=f"ref {requested}", skills=[reference, inline])
        assert container.status == "running"
        obj = next(o for o in cluster.objects.values() if o["spec"]["name"] == f"ref {requested}")
        ref_entry, inline_entry = obj["spec"]["skills"]
        assert (ref_entry["type"], ref_entry["skillId"], ref_entry["version"]) == ("skill_reference", skill.id,
                                                                                  expected)
        assert ref_entry["description"] == versions[expected].description
        assert ref_entry["bundle"]["fileId"].startswith("skill-") and len(ref_entry["bundle"]["sha256"]) == 64
        assert inline_entry["type"] == "inline" and inline_entry["name"] == "other"


@pytest.mark.parametrize(("reference", "param", "status"), [
    ({"skill_id": "skill_00000000000000000000000000000"}, "skills[0].skill_id", 404),
    ({"skill_id": "not-a-skill"}, "skills[0].skill_id", 404),
    ({"version": "7"}, "skills[0].version", 404),
    ({"version": "seven"}, "skills[0].version", 400),
])
async def test_bad_references_create_nothing(env, reference: dict, param: str, status: int) -> None:
    server, cluster = env
    client = sdk(server)
    skill = await client.skills.create(files=[("a.zip", bundle(), "application/zip")])
    with pytest.raises(openai.APIStatusError) as caught:
        await client.containers.create(name="bad ref", skills=[
            {"type": "skill_reference", "skill_id": skill.id, **reference}])
    assert caught.value.status_code == status and caught.value.body["param"] == param
    assert cluster.objects == {}


async def test_a_reference_and_an_inline_skill_of_one_folder_are_refused(env) -> None:
    server, cluster = env
    client = sdk(server)
    skill = await client.skills.create(files=[("a.zip", bundle(), "application/zip")])
    inline = {"type": "inline", "name": "dup", "description": "same folder",
              "source": {"type": "base64", "media_type": "application/zip",
                         "data": base64.b64encode(bundle()).decode()}}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.containers.create(name="dup", skills=[{"type": "skill_reference", "skill_id": skill.id}, inline])
    assert (caught.value.body["param"], caught.value.body["code"]) == ("skills[1]", "duplicate_skill")
    assert cluster.objects == {}


async def test_openapi_lists_skills(env) -> None:
    server, _ = env
    async with aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/openapi.json")) as reply:
            document = await reply.json()
    paths = document["paths"]
    assert {"post", "get"} <= set(paths["/skills"])
    assert {"get", "post", "delete"} <= set(paths["/skills/{skill_id}"])
    assert "get" in paths["/skills/{skill_id}/content"]
    assert {"post", "get"} <= set(paths["/skills/{skill_id}/versions"])
    assert {"get", "delete"} <= set(paths["/skills/{skill_id}/versions/{version}"])
    assert "get" in paths["/skills/{skill_id}/versions/{version}/content"]
    assert {"Skill", "SkillList", "SkillVersion", "SkillVersionList", "DeletedSkill", "DeletedSkillVersion",
            "SkillUpdateParams"} <= set(document["components"]["schemas"])
