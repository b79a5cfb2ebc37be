"""The Uploads API through the official `openai` SDK, on the whole product.

`client.uploads.upload_file_chunked(…)` end to end, its File used as `file_ids` at container create
and with `containers.files.create(file_id=…)`; cancel removes the parts; tenants are isolated. The
gateway's store is a directory here (tests/unit/test_uploads_api.py runs both backends); expiry
is exercised there too (an hour is too long for a session).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import openai
import pytest

from fixtures.gateway import Gateway, Tenant

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("gateway_logs")]

MiB = 1024 * 1024


def files_root(gateway: Gateway) -> Path:
    return Path(gateway.process.env["KONTAINERS_FILES_ROOT"])


def upload_dir(gateway: Gateway, tenant: Tenant, upload_id: str) -> Path:
    return files_root(gateway) / ".uploads" / tenant.namespace / upload_id


def test_upload_file_chunked_into_a_container(gateway: Gateway, tenant: Tenant, tmp_path: Path) -> None:
    client = tenant.client
    payload = os.urandom(150 * MiB + 12345)  # three parts of the SDK's default 64 MB, the last short
    source = tmp_path / "dataset.bin"
    source.write_bytes(payload)
    rss_before = gateway.rss()[0]
    upload = client.uploads.upload_file_chunked(file=source, mime_type="application/octet-stream",
                                                purpose="user_data", md5=hashlib.md5(payload).hexdigest())
    assert (upload.object, upload.status, upload.filename, upload.bytes) == (
        "upload", "completed", "dataset.bin", len(payload))
    file = upload.file
    assert file is not None and (file.bytes, file.filename, file.purpose) == (len(payload), "dataset.bin", "user_data")
    assert client.files.retrieve(file.id).bytes == len(payload)
    print(f"gateway RSS before {rss_before / MiB:.0f} MiB, after {gateway.rss()[0] / MiB:.0f} MiB")
    assert not any(p.name.startswith("part_") for p in upload_dir(gateway, tenant, upload.id).iterdir())

    container = client.containers.create(name="from an upload", file_ids=[file.id])
    assert container.status == "running"
    [inside] = list(client.containers.files.list(container.id))
    assert (inside.path, inside.bytes) == ("/mnt/data/dataset.bin", len(payload))
    digest = hashlib.sha256(client.containers.files.content.retrieve(inside.id, container_id=container.id).read())
    assert digest.hexdigest() == hashlib.sha256(payload).hexdigest()

    small = client.uploads.upload_file_chunked(file=b"made of parts\n", filename="notes.txt", bytes=14,
                                               mime_type="text/plain", purpose="assistants", part_size=5)
    copied = client.containers.files.create(container.id, file_id=small.file.id)
    assert (copied.path, copied.bytes) == ("/mnt/data/notes.txt", 14)
    assert client.containers.files.content.retrieve(copied.id, container_id=container.id).read() == b"made of parts\n"


def test_cancel_removes_the_parts(gateway: Gateway, tenant: Tenant) -> None:
    client = tenant.client
    upload = client.uploads.create(bytes=3 * MiB, filename="never.bin", mime_type="application/octet-stream",
                                   purpose="user_data")
    for _ in range(2):
        client.uploads.parts.create(upload.id, data=os.urandom(MiB))
    directory = upload_dir(gateway, tenant, upload.id)
    assert len([p for p in directory.iterdir() if p.name.startswith("part_")]) == 2
    cancelled = client.uploads.cancel(upload.id)
    assert (cancelled.id, cancelled.status, cancelled.file) == (upload.id, "cancelled", None)
    assert [p.name for p in directory.iterdir()] == ["upload.json"]
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload.id, data=b"late")
    assert list(client.files.list()) == []


def test_uploads_of_one_tenant_are_invisible_to_another(gateway: Gateway) -> None:
    alice, bob = gateway.make_tenant("uploads-a"), gateway.make_tenant("uploads-b")
    upload = alice.client.uploads.create(bytes=5, filename="a.txt", mime_type="text/plain", purpose="user_data")
    part = alice.client.uploads.parts.create(upload.id, data=b"alice")
    for call in (lambda: bob.client.uploads.parts.create(upload.id, data=b"bob"),
                 lambda: bob.client.uploads.complete(upload.id, part_ids=[part.id]),
                 lambda: bob.client.uploads.cancel(upload.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    done = alice.client.uploads.complete(upload.id, part_ids=[part.id])
    with pytest.raises(openai.NotFoundError):
        bob.client.containers.create(name="steal", file_ids=[done.file.id])
    assert alice.client.files.content(done.file.id).read() == b"alice"
