"""Delivery of file_ids and skills into a pod before it runs: gateway app + real sidecar app, kube faked.

The fake plays the operator's part of the contract (kontainers.resources.delivery_gate): a pod with files to
receive stays `pending` (DeliveringFiles) with its podIP until the files-delivered annotation
names that IP, then it is `running`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import socket
import zipfile
from pathlib import Path

import openai
import pytest
from aiohttp.test_utils import TestServer

from fixtures.gateway_fake import FakeCluster, gateway_test_settings
from kontainers.resources import delivery_gate as gate
from kontainers.gateway.delivery import delivery_names
from kontainers.gateway.app import create_app
from kontainers.resources import names
from kontainers.settings import FilesSettings
from kontainers.sidecar.app import SidecarConfig, create_app as sidecar_app

KEY = "sk-delivery"
TOKEN = "delivery-sidecar-token"
POD_IP = "127.0.0.1"


class GatedCluster(FakeCluster):
    """FakeCluster + the operator's delivery gate."""

    def operate(self, obj: dict) -> None:
        meta = obj["metadata"]
        secret = names.sidecar_secret_name(meta["name"], meta["uid"])
        self.secrets[(meta["namespace"], secret)] = {"data": {"token": base64.b64encode(TOKEN.encode()).decode()}}
        self.follow_pod(meta["namespace"], meta["name"])

    def follow_pod(self, namespace: str, name: str) -> None:
        obj = self.objects[(namespace, name)]
        if gate.awaiting_delivery(obj, POD_IP):
            self.set_status(namespace, name, status="pending", reason=gate.DELIVERING_FILES, podIP=POD_IP)
        else:
            self.set_status(namespace, name, status="running", reason=None, podIP=POD_IP)

    async def annotate_container(self, namespace, name, annotations) -> None:
        await super().annotate_container(namespace, name, annotations)
        if gate.delivery_done(self.objects[(namespace, name)]):
            self.follow_pod(namespace, name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def skill_zip() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("greeter/SKILL.md", b"---\nname: greeter\n---\nGreet.\n")
        archive.writestr("greeter/greet.py", b"print('hi')\n")
    return base64.b64encode(buffer.getvalue()).decode()


async def start_sidecar(pod_dir: Path, port: int) -> TestServer:
    (pod_dir / "data").mkdir(parents=True, exist_ok=True)
    server = TestServer(sidecar_app(SidecarConfig(root=pod_dir / "data", token=TOKEN, max_upload_bytes=64 << 20,
                                                  skills_root=pod_dir / "skills")), host="127.0.0.1", port=port)
    await server.start_server()
    return server


@pytest.fixture
async def env(tmp_path):
    port = free_port()
    cluster = GatedCluster()
    cluster.add_key(KEY, "tenant-d")
    cluster.operator = cluster.operate
    app = create_app(gateway_test_settings(sidecar_port=port, create_wait_seconds=15.0), cluster=cluster,
                     files=FilesSettings(root=tmp_path / "files"))
    gateway = TestServer(app, host="127.0.0.1")
    await gateway.start_server()
    client = openai.AsyncOpenAI(base_url=str(gateway.make_url("/v1")), api_key=KEY, max_retries=0)
    yield client, cluster, tmp_path / "pod", port
    await gateway.close()


async def test_files_and_skills_are_in_before_running(env) -> None:
    client, cluster, pod_dir, port = env
    sidecar = await start_sidecar(pod_dir, port)
    try:
        payloads = {"a.csv": os.urandom(2 << 20), "b.bin": os.urandom(1000)}
        ids = [(await client.files.create(file=(n, d), purpose="user_data")).id for n, d in payloads.items()]
        twin = await client.files.create(file=("a.csv", b"same name, other file"), purpose="user_data")
        skill = {"type": "inline", "name": "greeter", "description": "greets",
                 "source": {"type": "base64", "media_type": "application/zip", "data": skill_zip()}}

        container = await client.containers.create(name="seeded", file_ids=[*ids, twin.id], skills=[skill])

        assert container.status == "running"
        listed = {f.path: f async for f in client.containers.files.list(container.id)}
        twin_path = f"/mnt/data/a-{twin.id}.csv"
        assert set(listed) == {"/mnt/data/a.csv", "/mnt/data/b.bin", twin_path}
        assert {f.source for f in listed.values()} == {"user"}
        for name, data in payloads.items():
            content = await client.containers.files.content.retrieve(listed[f"/mnt/data/{name}"].id,
                                                                      container_id=container.id)
            assert content.read() == data
        assert (pod_dir / "data" / f"a-{twin.id}.csv").read_bytes() == b"same name, other file"
        assert (pod_dir / "skills" / "greeter" / "greet.py").read_bytes() == b"print('hi')\n"
        (obj,) = cluster.objects.values()
        assert obj["metadata"]["annotations"][names.ANNOTATION_FILES_DELIVERED] == POD_IP
    finally:
        await sidecar.close()


async def test_a_sidecar_that_starts_late_is_retried(env) -> None:
    client, cluster, pod_dir, port = env
    stored = await client.files.create(file=("late.txt", b"late"), purpose="user_data")
    create = asyncio.create_task(client.containers.create(name="late", file_ids=[stored.id]))
    await asyncio.sleep(1.0)  # the gateway keeps failing to reach the sidecar meanwhile
    (obj,) = cluster.objects.values()
    assert obj["status"]["status"] == "pending" and obj["status"]["reason"] == gate.DELIVERING_FILES
    sidecar = await start_sidecar(pod_dir, port)
    try:
        container = await create
        assert container.status == "running"
        assert (pod_dir / "data" / "late.txt").read_bytes() == b"late"
    finally:
        await sidecar.close()


async def test_a_new_pod_gets_the_files_again(env) -> None:
    client, cluster, pod_dir, port = env
    sidecar = await start_sidecar(pod_dir, port)
    try:
        stored = await client.files.create(file=("again.txt", b"again"), purpose="user_data")
        await client.containers.create(name="again", file_ids=[stored.id])
        (obj,) = cluster.objects.values()
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        # The pod is replaced (same IP, empty volume): the operator drops the marker.
        (pod_dir / "data" / "again.txt").unlink()
        del obj["metadata"]["annotations"][names.ANNOTATION_FILES_DELIVERED]
        cluster.follow_pod(namespace, name)
        assert cluster.objects[(namespace, name)]["status"]["status"] == "pending"
        for _ in range(100):
            if cluster.objects[(namespace, name)]["status"]["status"] == "running":
                break
            await asyncio.sleep(0.05)
        assert cluster.objects[(namespace, name)]["status"]["status"] == "running"
        assert (pod_dir / "data" / "again.txt").read_bytes() == b"again"
    finally:
        await sidecar.close()


def test_delivery_names_are_unique() -> None:
    assert delivery_names([("file-1", "a.txt"), ("file-2", "a.txt"), ("file-3", "b")]) == {
        "file-1": "a.txt", "file-2": "a-file-2.txt", "file-3": "b"}


class RecordingSidecars:
    """Stands in for the gateway's SidecarClient: records what would be sent."""

    def __init__(self) -> None:
        self.files: list[tuple[str, bytes]] = []
        self.skills: list[bytes] = []

    async def upload(self, obj, filename, chunks) -> dict:
        self.files.append((filename, b"".join([c async for c in chunks])))
        return {}

    async def put_skill(self, obj, chunks) -> dict:
        self.skills.append(b"".join([c async for c in chunks]))
        return {}


async def test_each_file_once_and_only_bundles_that_match_their_digest(tmp_path) -> None:
    import hashlib
    import time as clock

    from kontainers.gateway.delivery import Delivery
    from kontainers.files.fsstore import FilesystemStore
    from kontainers.files.store import TenantFile as FileRecord, new_file_id

    store = FilesystemStore(tmp_path)
    await store.start()

    async def one(data: bytes):
        yield data

    stored = await store.put(FileRecord(new_file_id(), "ns", "x.txt", "user_data", int(clock.time())), one(b"x"),
                             max_bytes=10)
    bundle = base64.b64decode(skill_zip())
    kept = await store.put(FileRecord("skill-" + "0" * 29, "ns", "greeter.zip", "skills", int(clock.time())),
                           one(bundle), max_bytes=len(bundle))
    annotations: list[dict] = []

    async def annotate(namespace, name, values) -> None:
        annotations.append(dict(values))

    sidecars = RecordingSidecars()
    delivery = Delivery(cache=None, store=store, sidecars=sidecars, annotate=annotate)  # type: ignore[arg-type]
    good = {"fileId": kept.id, "sha256": hashlib.sha256(bundle).hexdigest()}
    bad = {"fileId": kept.id, "sha256": "f" * 64}
    obj = {"metadata": {"namespace": "ns", "name": "c", "uid": "u"}, "status": {"podIP": POD_IP},
           "spec": {"fileIds": [stored.id, stored.id],
                    "skills": [{"type": "inline", "name": "a", "bundle": good},
                               {"type": "inline", "name": "b", "bundle": bad}]}}
    await delivery.deliver(obj)
    assert sidecars.files == [("x.txt", b"x")]
    assert sidecars.skills == [bundle]
    assert annotations == [{names.ANNOTATION_FILES_DELIVERED: POD_IP}]
