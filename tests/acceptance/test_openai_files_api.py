"""The Files API, file_ids, file_id and skills through the official `openai` SDK, on the whole product.

Operator, gateway and the dev node agent's real files sidecars run against the real control
plane (tests/fixtures/gateway.py); the gateway's file store is a directory here (both store
backends are run through the same API cases in tests/unit/test_files_api.py).
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
import zipfile
from pathlib import Path

import openai
import pytest

from fixtures.gateway import Gateway, NodeAgent, Tenant

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("gateway_logs")]

MiB = 1024 * 1024


def container_resource(gateway: Gateway, tenant: Tenant, container_id: str) -> dict:
    listing = json.loads(gateway.cluster.kubectl("get", "containers.kontainers.dev", "-n", tenant.namespace,
                                                 "-o", "json").stdout)
    return next(item for item in listing["items"] if item.get("status", {}).get("id") == container_id)


def test_file_ids_are_in_the_container_when_it_is_running(gateway: Gateway, tenant: Tenant) -> None:
    client = tenant.client
    payloads = {"data.csv": os.urandom(3 * MiB + 17), "notes.txt": b"hello from the Files API\n"}
    stored = {name: client.files.create(file=(name, data), purpose="user_data") for name, data in payloads.items()}
    assert {f.id for f in client.files.list()} == {f.id for f in stored.values()}

    container = client.containers.create(name="with files", file_ids=[f.id for f in stored.values()])
    assert container.status == "running"  # create waits for running, which waits for the files

    inside = {f.path: f for f in client.containers.files.list(container.id)}
    assert set(inside) == {f"/mnt/data/{name}" for name in payloads}
    for name, data in payloads.items():
        record = inside[f"/mnt/data/{name}"]
        assert (record.bytes, record.source, record.container_id) == (len(data), "user", container.id)
        assert client.containers.files.content.retrieve(record.id, container_id=container.id).read() == data
    resource = container_resource(gateway, tenant, container.id)
    assert resource["spec"]["fileIds"] == [f.id for f in stored.values()]
    # The operator let it run only once the gateway had delivered into this pod.
    assert resource["metadata"]["annotations"]["kontainers.dev/files-delivered"] == resource["status"]["podIP"]


def test_container_files_create_from_a_file_id(tenant: Tenant) -> None:
    client = tenant.client
    payload = os.urandom(2 * MiB)
    stored = client.files.create(file=("copied.bin", payload), purpose="assistants")
    container = client.containers.create(name="copy target")
    copied = client.containers.files.create(container.id, file_id=stored.id)
    assert (copied.object, copied.container_id, copied.path, copied.bytes, copied.source) == (
        "container.file", container.id, "/mnt/data/copied.bin", len(payload), "user")
    assert client.containers.files.content.retrieve(copied.id, container_id=container.id).read() == payload
    with pytest.raises(openai.NotFoundError):
        client.containers.files.create(container.id, file_id="file-00000000000000000000000000000")


def test_deleted_and_unknown_file_ids_create_nothing(gateway: Gateway, tenant: Tenant) -> None:
    client = tenant.client
    stored = client.files.create(file=("short-lived.txt", b"bye"), purpose="user_data")
    deleted = client.files.delete(stored.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (stored.id, "file", True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(stored.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.containers.create(name="never", file_ids=[stored.id])
    assert stored.id in caught.value.message
    assert list(client.containers.list()) == []
    listing = gateway.cluster.kubectl("get", "containers.kontainers.dev", "-n", tenant.namespace, "-o", "name")
    assert listing.stdout.strip() == ""


def test_files_of_one_tenant_are_invisible_to_another(gateway: Gateway) -> None:
    alice, bob = gateway.make_tenant("files-a"), gateway.make_tenant("files-b")
    secret = alice.client.files.create(file=("alice.txt", b"alice only"), purpose="user_data")
    assert list(bob.client.files.list()) == []
    for call in (bob.client.files.retrieve, bob.client.files.content, bob.client.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(secret.id)
    with pytest.raises(openai.NotFoundError):
        bob.client.containers.create(name="steal", file_ids=[secret.id])
    bobs = bob.client.containers.create(name="bob's")
    with pytest.raises(openai.NotFoundError):
        bob.client.containers.files.create(bobs.id, file_id=secret.id)
    assert alice.client.files.content(secret.id).read() == b"alice only"


def test_file_list_pagination(tenant: Tenant) -> None:
    client = tenant.client
    ids = [client.files.create(file=(f"{i}.txt", b"%d" % i), purpose="user_data").id for i in range(12)]
    assert [f.id for f in client.files.list(limit=5, order="asc")] == ids
    assert [f.id for f in client.files.list(limit=5)] == ids[::-1]
    page = client.files.list(limit=5, order="asc")
    assert [f.id for f in page.data] == ids[:5] and page.has_more
    assert [f.id for f in client.files.list(limit=5, order="asc", after=ids[9])] == ids[10:]


def test_inline_skills_are_unpacked_read_only(gateway: Gateway, tenant: Tenant, node_agent: NodeAgent) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("csv-tools/SKILL.md", b"---\nname: csv-tools\ndescription: CSV helpers\n---\nUse it.\n")
        archive.writestr("csv-tools/scripts/summarise.py", b"print('summary')\n")
    skill = {"type": "inline", "name": "csv-tools", "description": "CSV helpers",
             "source": {"type": "base64", "media_type": "application/zip",
                        "data": base64.b64encode(buffer.getvalue()).decode()}}
    container = tenant.client.containers.create(name="skilled", skills=[skill])
    assert container.status == "running"
    resource = container_resource(gateway, tenant, container.id)
    pod_dir = Path(node_agent.state_dir) / "pods" / tenant.namespace / resource["status"]["podName"]
    assert (pod_dir / "skills" / "csv-tools" / "SKILL.md").read_bytes().startswith(b"---\nname: csv-tools")
    assert (pod_dir / "skills" / "csv-tools" / "scripts" / "summarise.py").read_bytes() == b"print('summary')\n"
    pod = json.loads(gateway.cluster.kubectl("get", "pod", "-n", tenant.namespace, resource["status"]["podName"],
                                             "-o", "json").stdout)
    mounts = {c["name"]: {m["mountPath"]: m.get("readOnly", False) for m in c["volumeMounts"]}
              for c in pod["spec"]["containers"]}
    assert mounts["sandbox"]["/mnt/skills"] is True and mounts["files"]["/mnt/skills"] is False

    bad = dict(skill, source=dict(skill["source"], data=base64.b64encode(b"not a zip").decode()))
    with pytest.raises(openai.BadRequestError) as caught:
        tenant.client.containers.create(name="bad skill", skills=[bad])
    assert caught.value.body["param"] == "skills[0].source.data"


def skill_zip(folder: str, text: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{folder}/SKILL.md", b"---\nname: %s\ndescription: v\n---\n" % folder.encode() + text)
    return buffer.getvalue()


def test_skill_references_unpack_the_version_they_name(gateway: Gateway, tenant: Tenant,
                                                       node_agent: NodeAgent) -> None:
    client = tenant.client
    skill = client.skills.create(files=[("report.zip", skill_zip("report", b"one\n"), "application/zip")])
    second = client.skills.versions.create(skill.id, files=[("report/SKILL.md", b"---\nname: report\n---\ntwo\n")],
                                           default=True)
    assert (client.skills.retrieve(skill.id).default_version, second.version) == ("2", "2")

    pinned = client.containers.create(name="v1", skills=[{"type": "skill_reference", "skill_id": skill.id,
                                                          "version": "1"}])
    default = client.containers.create(name="default", skills=[{"type": "skill_reference", "skill_id": skill.id}])
    assert (pinned.status, default.status) == ("running", "running")

    def skill_md(container_id: str) -> bytes:
        resource = container_resource(gateway, tenant, container_id)
        pod_dir = Path(node_agent.state_dir) / "pods" / tenant.namespace / resource["status"]["podName"]
        return (pod_dir / "skills" / "report" / "SKILL.md").read_bytes()

    assert skill_md(pinned.id).endswith(b"one\n") and skill_md(default.id).endswith(b"two\n")
    client.skills.delete(skill.id)  # a skill in use can go: its containers keep their copies
    assert skill_md(pinned.id).endswith(b"one\n")

    count = len(list(client.containers.list()))
    for reference, param in [({"skill_id": skill.id}, "skills[0].skill_id"),
                             ({"skill_id": "skill_0123456789abcdef0123456789a"}, "skills[0].skill_id")]:
        with pytest.raises(openai.NotFoundError) as caught:
            client.containers.create(name="ref", skills=[{"type": "skill_reference", **reference}])
        assert caught.value.body["param"] == param
    assert len(list(client.containers.list())) == count  # nothing created


def test_a_recreated_pod_gets_its_file_ids_again(gateway: Gateway, tenant: Tenant) -> None:
    """The dev node agent gives a new pod an empty /mnt/data: the files must be delivered again."""
    client = tenant.client
    stored = client.files.create(file=("survivor.txt", b"delivered again"), purpose="user_data")
    container = client.containers.create(name="recreated", file_ids=[stored.id])
    first = container_resource(gateway, tenant, container.id)
    pod_name = first["status"]["podName"]
    gateway.cluster.kubectl("delete", "pod", "-n", tenant.namespace, pod_name, "--wait=true")

    deadline = time.monotonic() + 90
    while True:
        resource = container_resource(gateway, tenant, container.id)
        status = resource.get("status") or {}
        recreated = any(c.get("type") == "PodRecreated" for c in status.get("conditions") or [])
        if status.get("status") == "running" and recreated:
            break
        assert time.monotonic() < deadline, f"not running again: {status}"
        time.sleep(0.2)
    files = list(client.containers.files.list(container.id))
    assert [f.path for f in files] == ["/mnt/data/survivor.txt"]
    assert client.containers.files.content.retrieve(files[0].id, container_id=container.id).read() == b"delivered again"
    assert resource["metadata"]["annotations"]["kontainers.dev/files-delivered"] == status["podIP"]
