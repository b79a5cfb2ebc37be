"""The official `openai` Python SDK (pinned in the test extras), unmodified, against kontainers.

Runs the whole product on the real control plane: operator, gateway, and the dev node agent that
gives kwok pods a real files sidecar (see tests/fixtures/gateway.py).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from fixtures.gateway import Gateway, Tenant

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("gateway_logs")]

MiB = 1024 * 1024


def kubectl_json(gateway: Gateway, *args: str) -> dict:
    return json.loads(gateway.cluster.kubectl(*args, "-o", "json").stdout)


@pytest.fixture(scope="module")
def expiring(gateway: Gateway) -> tuple[Tenant, str]:
    """A container with a one-minute idle expiry, made when this module starts and left untouched,
    so that it has expired by the time the last test of the module checks it."""
    tenant = gateway.make_tenant("expiring")
    container = tenant.client.containers.create(name="expires soon",
                                                expires_after={"anchor": "last_active_at", "minutes": 1})
    return tenant, container.id


def test_create_with_every_param(gateway: Gateway, tenant: Tenant, expiring) -> None:
    client = tenant.client
    container = client.containers.create(
        name="every param",
        expires_after={"anchor": "last_active_at", "minutes": 30},
        file_ids=[],
        memory_limit="4g",
        network_policy={"type": "allowlist", "allowed_domains": ["api.example.com", "*.pypi.org"],
                        "domain_secrets": [{"domain": "api.example.com", "name": "EXAMPLE_TOKEN",
                                            "value": "tok-7b1e0c"}]},
        skills=[],
    )
    assert container.id.startswith("cntr_") and len(container.id) == 53
    assert container.object == "container" and container.name == "every param"
    assert container.status == "running"
    assert container.memory_limit == "4g"
    assert (container.expires_after.anchor, container.expires_after.minutes) == ("last_active_at", 30)
    assert container.network_policy.type == "allowlist"
    assert container.network_policy.allowed_domains == ["api.example.com", "*.pypi.org"]
    assert container.created_at > time.time() - 600 and container.last_active_at >= container.created_at
    assert "tok-7b1e0c" not in container.model_dump_json()

    got = client.containers.retrieve(container.id)
    assert got.id == container.id and got.network_policy.model_dump() == container.network_policy.model_dump()

    # The Container resource references the secret; only a Secret owned by it holds the value.
    (resource,) = kubectl_json(gateway, "-n", tenant.namespace, "get", "containers.kontainers.dev")["items"]
    assert resource["spec"]["memoryLimit"] == "4g"
    assert "tok-7b1e0c" not in json.dumps(resource)
    ref = resource["spec"]["networkPolicy"]["domainSecrets"][0]["secretKeyRef"]
    secret = kubectl_json(gateway, "-n", tenant.namespace, "get", "secret", ref["name"])
    assert secret["metadata"]["ownerReferences"][0]["uid"] == resource["metadata"]["uid"]


def test_defaults_retrieve_and_delete(tenant: Tenant) -> None:
    client = tenant.client
    container = client.containers.create(name="defaults")
    assert container.memory_limit == "1g" and container.expires_after.minutes == 20
    assert container.network_policy.type == "disabled"
    assert client.containers.retrieve(container.id).name == "defaults"
    assert client.containers.delete(container.id) is None
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve(container.id)
    assert [c.id for c in client.containers.list()] == []


def test_upload_and_read_back_a_multi_megabyte_binary(gateway: Gateway, tenant: Tenant) -> None:
    client = tenant.client
    container = client.containers.create(name="files")
    payload = os.urandom(12 * MiB + 12345)
    uploaded = client.containers.files.create(container.id, file=("data.bin", payload))
    assert uploaded.object == "container.file" and uploaded.container_id == container.id
    assert uploaded.id.startswith("cfile_") and uploaded.bytes == len(payload)
    assert uploaded.path == "/mnt/data/data.bin" and uploaded.source == "user"

    content = client.containers.files.content.retrieve(uploaded.id, container_id=container.id)
    assert content.read() == payload

    small = client.containers.files.create(container.id, file=("notes.txt", b"hello\n"))
    listed = list(client.containers.files.list(container.id, limit=1))
    assert {f.id for f in listed} == {uploaded.id, small.id}
    assert [f.id for f in client.containers.files.list(container.id, order="asc")] == [uploaded.id, small.id]
    got = client.containers.files.retrieve(small.id, container_id=container.id)
    assert (got.bytes, got.path) == (6, "/mnt/data/notes.txt")

    assert client.containers.files.delete(small.id, container_id=container.id) is None
    with pytest.raises(openai.NotFoundError):
        client.containers.files.retrieve(small.id, container_id=container.id)
    assert [f.id for f in client.containers.files.list(container.id)] == [uploaded.id]

    assert client.containers.delete(container.id) is None
    with pytest.raises(openai.NotFoundError):
        client.containers.files.list(container.id)


def test_gateway_memory_does_not_grow_with_file_size(gateway: Gateway, tenant: Tenant) -> None:
    client = tenant.client
    container = client.containers.create(name="big file")
    payload = os.urandom(96 * MiB)
    client.containers.files.create(container.id, file=("warmup.bin", payload[: 4 * MiB]))
    _, peak_before = gateway.rss()
    uploaded = client.containers.files.create(container.id, file=("big.bin", payload))
    assert client.containers.files.content.retrieve(uploaded.id, container_id=container.id).read() == payload
    _, peak_after = gateway.rss()
    growth = peak_after - peak_before
    print(f"gateway peak RSS {peak_before / MiB:.1f} → {peak_after / MiB:.1f} MiB for a 96 MiB round trip")
    assert growth < 24 * MiB, f"gateway peak RSS grew by {growth / MiB:.1f} MiB for a 96 MiB file"


def test_sdk_exception_classes(gateway: Gateway, tenant: Tenant) -> None:
    client = tenant.client
    with pytest.raises(openai.BadRequestError) as bad:
        client.containers.create(name="x", memory_limit="3g")  # type: ignore[arg-type]
    assert bad.value.status_code == 400 and bad.value.param == "memory_limit"
    assert bad.value.type == "invalid_request_error" and bad.value.request_id.startswith("req_")

    with pytest.raises(openai.AuthenticationError) as unauthorized:
        gateway.client("sk-kont-not-a-key").containers.list()
    assert unauthorized.value.status_code == 401 and unauthorized.value.code == "invalid_api_key"

    with pytest.raises(openai.NotFoundError) as missing:
        client.containers.retrieve("cntr_" + "0" * 48)
    assert missing.value.status_code == 404 and missing.value.request_id


def test_error_shapes_for_malformed_json_and_wrong_types(gateway: Gateway, tenant: Tenant) -> None:
    headers = {"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=gateway.base_url, headers=headers) as http:
        for body, param in [(b'{"name": "x",', None), (b'{"name": ["x"]}', "name"),
                            (b'{"name": "x", "expires_after": {"anchor": "last_active_at", "minutes": "10"}}',
                             "expires_after.minutes"),
                            (b'{"name": "x", "network_policy": {"type": "allowlist", "allowed_domains": '
                             b'["https://example.com/path"]}}', "network_policy.allowed_domains[0]"),
                            (b'{"name": "x", "color": "blue"}', "color")]:
            reply = http.post("/containers", content=body)
            assert reply.status_code == 400, reply.text
            assert reply.headers["content-type"].startswith("application/json")
            assert reply.headers["x-request-id"].startswith("req_")
            error = reply.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}
            assert (error["type"], error["param"]) == ("invalid_request_error", param)
    with pytest.raises(openai.BadRequestError) as wrong_type:
        tenant.client.containers.create(name=42)  # type: ignore[arg-type]
    assert wrong_type.value.param == "name" and wrong_type.value.code == "invalid_type"
    assert tenant.client.containers.list().data == []


def test_tenant_isolation(gateway: Gateway) -> None:
    alice, bob = gateway.make_tenant("alice"), gateway.make_tenant("bob")
    mine = alice.client.containers.create(name="alice's")
    alice.client.containers.files.create(mine.id, file=("secret.txt", b"for alice only"))
    theirs = bob.client.containers.create(name="bob's")
    assert [c.id for c in alice.client.containers.list()] == [mine.id]
    assert [c.id for c in bob.client.containers.list()] == [theirs.id]
    for call in (lambda: bob.client.containers.retrieve(mine.id),
                 lambda: bob.client.containers.files.list(mine.id),
                 lambda: bob.client.containers.files.create(mine.id, file=("x.txt", b"x")),
                 lambda: bob.client.containers.delete(mine.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert alice.client.containers.retrieve(mine.id).status == "running"


class AbandonFirstCreate(httpx.HTTPTransport):
    """Sends the first POST /containers, then gives up on it before its reply (a read timeout,
    connection closed), as the SDK does when a create takes longer than its timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.abandoned = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/containers") and not self.abandoned:
            self.abandoned += 1
            # The gateway answers a create once the container is running: far later than 20 ms.
            # (The SDK puts its own timeout in the request's extensions; this one replaces it.)
            request.extensions["timeout"] = httpx.Timeout(5.0, read=0.02).as_dict()
            super().handle_request(request)  # raises ReadTimeout, and closes its connection
            raise AssertionError("the create answered within 20 ms")
        return super().handle_request(request)


def test_create_is_idempotent_under_sdk_retries(gateway: Gateway, tenant: Tenant) -> None:
    transport = AbandonFirstCreate()
    client = gateway.client(tenant.api_key, http_client=httpx.Client(transport=transport), max_retries=2)
    container = client.containers.create(name="retried")
    assert transport.abandoned == 1  # the SDK timed out and retried the POST
    items = kubectl_json(gateway, "-n", tenant.namespace, "get", "containers.kontainers.dev")["items"]
    assert len(items) == 1, "a retried create must not make a second container"
    assert [c.id for c in client.containers.list()] == [container.id]
    # Another caller sending the same body, retried, gets a container of its own: the first
    # reply reached its caller.
    other = gateway.client(tenant.api_key).containers.create(
        name="retried", extra_headers={"x-stainless-retry-count": "1"})
    assert other.id != container.id

    key = {"Idempotency-Key": "order-42"}
    first = tenant.client.containers.create(name="keyed", extra_headers=key)
    again = tenant.client.containers.create(name="keyed", extra_headers=key)
    assert again.id == first.id
    assert len(tenant.client.containers.list().data) == 3


def test_containers_made_with_kubectl_appear(gateway: Gateway, tenant: Tenant) -> None:
    gateway.cluster.kubectl("-n", tenant.namespace, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "kontainers.dev/v1alpha1", "kind": "Container",
        "metadata": {"name": "gitops-made"}, "spec": {"name": "from git", "memoryLimit": "1g"},
    }))
    deadline = time.monotonic() + 30
    while not (listed := tenant.client.containers.list().data) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [c.name for c in listed] == ["from git"]
    uid = kubectl_json(gateway, "-n", tenant.namespace, "get", "containers.kontainers.dev", "gitops-made")
    assert tenant.client.containers.retrieve(listed[0].id).name == "from git"
    assert uid["metadata"]["uid"]


def test_list_auto_paginates_over_100_containers_both_orders_and_by_name(gateway: Gateway) -> None:
    tenant = gateway.make_tenant("many")
    client = tenant.client
    names = ["needle" if n % 20 == 0 else f"hay-{n}" for n in range(105)]
    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda name: client.containers.create(name=name), names))
    try:
        assert len({c.id for c in created}) == 105
        ascending = [c.id for c in client.containers.list(order="asc", limit=17)]
        descending = [c.id for c in client.containers.list(order="desc", limit=100)]
        default = [c.id for c in client.containers.list()]
        assert len(ascending) == len(set(ascending)) == 105
        assert set(ascending) == {c.id for c in created}
        assert descending == ascending[::-1] == default
        by_id = {c.id: c for c in created}
        stamps = [by_id[i].created_at for i in ascending]
        assert stamps == sorted(stamps)
        first_page = client.containers.list(limit=100)
        assert len(first_page.data) == 100 and first_page.has_more is True
        needles = list(client.containers.list(name="needle", limit=2))
        assert len(needles) == 6 and {c.name for c in needles} == {"needle"}
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda c: client.containers.delete(c.id), created))


def test_expired_container(gateway: Gateway, expiring: tuple[Tenant, str]) -> None:
    """Last in the module: the container made at its start has been idle for over a minute."""
    tenant, container_id = expiring
    deadline = time.monotonic() + 240
    while True:  # watch through kubectl: asking the API would count as activity
        items = kubectl_json(gateway, "-n", tenant.namespace, "get", "containers.kontainers.dev")["items"]
        if items and (items[0].get("status") or {}).get("status") == "expired":
            break
        assert time.monotonic() < deadline, f"not expired in time: {items}"
        time.sleep(2)
    client = tenant.client
    assert client.containers.retrieve(container_id).status == "expired"
    for call in (lambda: client.containers.files.list(container_id),
                 lambda: client.containers.files.create(container_id, file=("late.txt", b"too late"))):
        with pytest.raises(openai.BadRequestError) as expired:
            call()
        assert expired.value.status_code == 400
        assert expired.value.body["message"] == "Container is expired."
        assert expired.value.type == "invalid_request_error"


def test_no_api_key_reaches_the_gateway_log_whatever_the_request(gateway: Gateway, tenant: Tenant) -> None:
    """A control character after the key, a header or request line over 8 KB: aiohttp used to log
    the raw header line (the whole key) at ERROR in the gateway's log."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(gateway.url)
    key = tenant.api_key
    head = b"GET /v1/containers HTTP/1.1\r\nHost: gateway\r\n"
    auth = f"Authorization: Bearer {key}".encode()
    requests = [head + auth + b"\x01\r\n\r\n", head + auth + b"A" * 9000 + b"\r\n\r\n",
                f"GET /v1/containers?k={key}&p=".encode() + b"x" * 9000 + b" HTTP/1.1\r\n\r\n",
                head + auth + b"\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n"]
    for request in requests:
        with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
            sock.sendall(request)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head_, _, body = reply.partition(b"\r\n\r\n")
        assert b" 400 " in head_.split(b"\r\n")[0] and b"application/json" in head_
        assert "error" in json.loads(body) and key.encode() not in body
    # the server still answers the key, and the log has seen these requests
    assert len(tenant.client.containers.list().data) == 0
    deadline = time.monotonic() + 5
    while "refused a malformed HTTP request" not in gateway.process.log.read_text():
        assert time.monotonic() < deadline, gateway.tail()
        time.sleep(0.1)
    text = gateway.process.log.read_text()
    assert key not in text and key[8:24] not in text
