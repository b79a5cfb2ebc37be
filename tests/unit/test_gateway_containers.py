"""The gateway's /v1/containers over a fake cluster: shapes, errors, auth, tenancy, retries."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from fixtures.gateway_fake import FakeCluster, run_immediately, start_client
from kontainers.gateway import resource
from kontainers.gateway.state import ACTIVITY
from kontainers.resources import names

KEY_A, KEY_B = "sk-tenant-a", "sk-tenant-b"
AUTH_A = {"Authorization": f"Bearer {KEY_A}"}
AUTH_B = {"Authorization": f"Bearer {KEY_B}"}


@pytest.fixture
async def cluster() -> FakeCluster:
    fake = FakeCluster()
    fake.add_key(KEY_A, "tenant-a")
    fake.add_key(KEY_B, "tenant-b")
    fake.operator = run_immediately(fake)
    return fake


@pytest.fixture
async def client(cluster: FakeCluster):
    client = await start_client(cluster)
    yield client
    await client.close()


async def create(client, body: dict | None = None, headers: dict | None = None, **kwargs):
    return await client.post("/v1/containers", json=body or {"name": "c"}, headers={**AUTH_A, **(headers or {})},
                             **kwargs)


async def error_of(response, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


async def test_create_returns_a_running_container_with_every_field(client, cluster: FakeCluster) -> None:
    response = await create(client, {
        "name": "all params", "memory_limit": "4g", "expires_after": {"anchor": "last_active_at", "minutes": 7},
        "network_policy": {"type": "allowlist", "allowed_domains": ["api.example.com"],
                           "domain_secrets": [{"domain": "api.example.com", "name": "TOKEN", "value": "hunter2"}]},
    })
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["id"].startswith("cntr_") and len(body["id"]) == 5 + 48
    assert body["object"] == "container" and body["status"] == "running" and body["name"] == "all params"
    assert body["memory_limit"] == "4g"
    assert body["expires_after"] == {"anchor": "last_active_at", "minutes": 7}
    assert body["network_policy"] == {"type": "allowlist", "allowed_domains": ["api.example.com"]}
    assert isinstance(body["created_at"], int) and body["last_active_at"] >= body["created_at"]
    assert "hunter2" not in json.dumps(body)

    (obj,) = cluster.objects.values()
    assert obj["metadata"]["namespace"] == "tenant-a"
    secret_name = names.domain_secrets_name(obj["metadata"]["name"])
    assert obj["spec"]["networkPolicy"]["domainSecrets"] == [
        {"domain": "api.example.com", "name": "TOKEN", "secretKeyRef": {"name": secret_name, "key": "0-TOKEN"}}]
    assert "hunter2" not in json.dumps(obj)
    secret = cluster.secrets[("tenant-a", secret_name)]
    assert secret["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    assert await cluster.secret_value("tenant-a", secret_name, "0-TOKEN") == "hunter2"


async def test_defaults_and_spec(client, cluster: FakeCluster) -> None:
    body = await (await create(client, {"name": "Hello World!"})).json()
    assert body["memory_limit"] == "1g"
    assert body["expires_after"] == {"anchor": "last_active_at", "minutes": 20}
    assert body["network_policy"] == {"type": "disabled"}
    (obj,) = cluster.objects.values()
    assert obj["metadata"]["name"].startswith("hello-world-")
    assert obj["spec"] == {"name": "Hello World!", "memoryLimit": "1g",
                           "expiresAfter": {"anchor": "last_active_at", "minutes": 20},
                           "networkPolicy": {"type": "disabled"}}


async def test_create_waits_at_most_the_setting_and_returns_pending(cluster: FakeCluster) -> None:
    cluster.operator = None
    client = await start_client(cluster, create_wait_seconds=0.2)
    try:
        response = await create(client)
        assert (await response.json())["status"] == "pending"
    finally:
        await client.close()


async def test_create_returns_as_soon_as_running(cluster: FakeCluster) -> None:
    cluster.operator = None
    client = await start_client(cluster, create_wait_seconds=10)
    try:
        async def operate_later() -> None:
            while not cluster.objects:
                await asyncio.sleep(0.01)
            (obj,) = cluster.objects.values()
            await asyncio.sleep(0.1)
            cluster.set_status("tenant-a", obj["metadata"]["name"], status="running", podIP="127.0.0.1")

        started = asyncio.get_running_loop().time()
        operating = asyncio.create_task(operate_later())
        body = await (await create(client)).json()
        await operating
        assert body["status"] == "running"
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await client.close()


@pytest.mark.parametrize(("raw", "param", "code"), [
    (b"{not json", None, "invalid_json"),
    (b"", None, "invalid_json"),
    (b"[" * 100_000 + b"]" * 100_000, None, "invalid_json"),  # nested deeper than the parser recurses
    (b"[1, 2]", None, "invalid_type"),
    (b'{"name": 12}', "name", "invalid_type"),
    (b'{"name": "x", "memory_limit": "3g"}', "memory_limit", "invalid_value"),
    (b'{"name": "x", "surprise": true}', "surprise", "unknown_parameter"),
    (b'{"name": "x", "network_policy": {"type": "allowlist", "allowed_domains": ["ftp://x.com"]}}',
     "network_policy.allowed_domains[0]", "invalid_value"),
    (b'{"name": "x", "file_ids": "file-abc"}', "file_ids", "invalid_type"),
])
async def test_bad_create_bodies_are_400_naming_the_param(client, cluster: FakeCluster, raw: bytes, param, code) -> None:
    response = await client.post("/v1/containers", data=raw, headers={**AUTH_A, "Content-Type": "application/json"})
    error = await error_of(response, 400)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert not cluster.objects


@pytest.mark.parametrize(("raw", "content_type", "param", "code"), [
    (b'{"name": "x", "name": "y"}', "application/json", None, "duplicate_key"),
    (b'{"name": "x", "network_policy": {"type": "disabled", "type": "allowlist"}}', "application/json", None,
     "duplicate_key"),
    (b'{"name": "x"}', "text/plain", None, "unsupported_content_type"),
    (b'{"name": "x"}', "application/x-www-form-urlencoded", None, "unsupported_content_type"),
    (b'{"name": "x"}', None, None, "unsupported_content_type"),
    ('{"name": "x"}'.encode("utf-16"), "application/json", None, "invalid_json"),  # UTF-16 with its BOM
    (b'{"name": "a\\u0000b"}', "application/json", "name", "invalid_value"),
    (b'{"name": "line\\nbreak"}', "application/json", "name", "invalid_value"),
    (b'{"name": "\\udcff"}', "application/json", "name", "invalid_value"),
])
async def test_lax_input_is_refused(client, cluster: FakeCluster, raw: bytes, content_type, param, code) -> None:
    headers = {**AUTH_A, **({"Content-Type": content_type} if content_type else {})}
    response = await client.post("/v1/containers", data=raw, headers=headers)
    error = await error_of(response, 400)
    assert (error["param"], error["code"]) == (param, code), error
    assert not cluster.objects


async def test_a_utf8_bom_before_json_is_ignored(client, cluster: FakeCluster) -> None:
    response = await client.post("/v1/containers", data=b'\xef\xbb\xbf{"name": "bom"}',
                                 headers={**AUTH_A, "Content-Type": "application/json; charset=utf-8"})
    assert response.status == 200 and (await response.json())["name"] == "bom"
    response = await client.post("/v1/containers", data=b'{"name": "plus"}',
                                 headers={**AUTH_A, "Content-Type": "application/merge-patch+json"})
    assert response.status == 200


async def test_auth_is_required_and_keys_are_never_echoed(client) -> None:
    error = await error_of(await client.get("/v1/containers"), 401)
    assert error["code"] == "missing_api_key"
    error = await error_of(await client.get("/v1/containers", headers={"Authorization": "Bearer sk-wrong-key"}), 401)
    assert error["code"] == "invalid_api_key" and "sk-wrong-key" not in error["message"]
    error = await error_of(await client.get("/v1/containers", headers={"Authorization": "Basic abc"}), 401)
    assert (await client.get("/healthz")).status == 200


async def test_tenants_see_only_their_namespace(client, cluster: FakeCluster) -> None:
    mine = await (await create(client, {"name": "mine"})).json()
    assert (await client.get(f"/v1/containers/{mine['id']}", headers=AUTH_A)).status == 200
    for method in ("get", "delete"):
        response = await getattr(client, method)(f"/v1/containers/{mine['id']}", headers=AUTH_B)
        error = await error_of(response, 404)
        assert error["param"] == "container_id"
    response = await client.get(f"/v1/containers/{mine['id']}/files", headers=AUTH_B)
    await error_of(response, 404)
    listing = await (await client.get("/v1/containers", headers=AUTH_B)).json()
    assert listing["data"] == []
    assert len(cluster.objects) == 1


async def test_containers_made_with_kubectl_appear(client, cluster: FakeCluster) -> None:
    obj = cluster.add_external("tenant-a", "by-hand", {"name": "by hand", "memoryLimit": "16g"})
    cid = names.container_id(obj["metadata"]["uid"])
    body = await (await client.get(f"/v1/containers/{cid}", headers=AUTH_A)).json()
    assert (body["name"], body["memory_limit"], body["status"]) == ("by hand", "16g", "pending")


async def test_list_pages_in_both_orders_and_filters_by_name(client, cluster: FakeCluster) -> None:
    for n in range(25):
        cluster.add_external("tenant-a", f"c{n}", {"name": "even" if n % 2 == 0 else "odd"},
                             created=f"2030-01-01T00:00:{n // 4:02d}Z")
    for order in ("asc", "desc"):
        ids, after = [], None
        while True:
            query = {"order": order, "limit": "7", **({"after": after} if after else {})}
            body = await (await client.get("/v1/containers", params=query, headers=AUTH_A)).json()
            assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}
            ids += [c["id"] for c in body["data"]]
            if not body["has_more"]:
                break
            assert body["last_id"] == body["data"][-1]["id"]
            after = body["last_id"]
        assert len(ids) == len(set(ids)) == 25
        created = [cluster.containers.get("tenant-a", i)["metadata"]["creationTimestamp"] for i in ids]
        assert created == sorted(created, reverse=order == "desc")
    body = await (await client.get("/v1/containers", params={"name": "even", "limit": "100"}, headers=AUTH_A)).json()
    assert len(body["data"]) == 13 and {c["name"] for c in body["data"]} == {"even"}
    default = await (await client.get("/v1/containers", headers=AUTH_A)).json()
    assert len(default["data"]) == 20 and default["has_more"] is True


async def test_containers_created_in_the_same_second_list_in_creation_order(client, cluster: FakeCluster) -> None:
    """created_at has second resolution; the order within a second is the gateway's sub-second
    creation time (annotation), then for kubectl-made ones the name — never the random id."""
    cluster.created_timestamp = "2030-01-01T00:00:07Z"  # every create lands in the same API-server second
    made = [(await (await create(client, {"name": f"n{i}"})).json())["id"] for i in range(8)]
    for n in (2, 0, 1):  # kubectl-made in that second: no annotation, ordered by name, before the others
        cluster.add_external("tenant-a", f"by-hand-{n}", {"name": "h"}, created="2030-01-01T00:00:07Z")
    by_hand = [names.container_id(cluster.objects[("tenant-a", f"by-hand-{n}")]["metadata"]["uid"]) for n in range(3)]
    expected = by_hand + made
    for order in ("asc", "desc"):
        ids, after = [], None
        while True:  # pages of 3: every cursor lands inside the same second
            query = {"order": order, "limit": "3", **({"after": after} if after else {})}
            body = await (await client.get("/v1/containers", params=query, headers=AUTH_A)).json()
            ids += [c["id"] for c in body["data"]]
            if not body["has_more"]:
                break
            after = body["last_id"]
        assert ids == (expected if order == "asc" else expected[::-1])
    # a cursor naming a container deleted since keeps its place
    assert (await client.delete(f"/v1/containers/{made[3]}", headers=AUTH_A)).status == 200
    rest = await (await client.get("/v1/containers", params={"order": "asc", "after": made[3]},
                                   headers=AUTH_A)).json()
    assert [c["id"] for c in rest["data"]] == made[4:]


@pytest.mark.parametrize(("query", "param"), [({"limit": "0"}, "limit"), ({"limit": "abc"}, "limit"),
                                              ({"order": "sideways"}, "order"), ({"after": "cntr_nope"}, "after")])
async def test_bad_list_queries(client, query: dict, param: str) -> None:
    error = await error_of(await client.get("/v1/containers", params=query, headers=AUTH_A), 400)
    assert error["param"] == param


async def test_paging_past_a_deleted_container_still_works(client, cluster: FakeCluster) -> None:
    for n in range(5):
        cluster.add_external("tenant-a", f"c{n}", {"name": "x"}, created=f"2030-01-01T00:00:0{n}Z")
    first = await (await client.get("/v1/containers", params={"order": "asc", "limit": "2"}, headers=AUTH_A)).json()
    assert (await client.delete(f"/v1/containers/{first['last_id']}", headers=AUTH_A)).status == 200
    rest = await (await client.get("/v1/containers", params={"order": "asc", "after": first["last_id"]},
                                   headers=AUTH_A)).json()
    assert len(rest["data"]) == 3


async def test_delete(client, cluster: FakeCluster) -> None:
    body = await (await create(client)).json()
    response = await client.delete(f"/v1/containers/{body['id']}", headers={**AUTH_A, "Accept": "*/*"})
    assert response.status == 200 and response.content_type == "application/json"
    assert await response.json() == {"id": body["id"], "object": "container.deleted", "deleted": True}
    assert not cluster.objects
    await error_of(await client.get(f"/v1/containers/{body['id']}", headers=AUTH_A), 404)
    await error_of(await client.delete(f"/v1/containers/{body['id']}", headers=AUTH_A), 404)


async def test_idempotency_key_returns_the_same_container(client, cluster: FakeCluster) -> None:
    headers = {"Idempotency-Key": "op-1"}
    first = await (await create(client, headers=headers)).json()
    again = await (await create(client, headers={**headers, "x-stainless-retry-count": "1"})).json()
    assert again["id"] == first["id"]
    # The key is scoped to the API key: another tenant with the same Idempotency-Key gets its own.
    other = await client.post("/v1/containers", json={"name": "c"}, headers={**AUTH_B, **headers})
    assert (await other.json())["id"] != first["id"]
    assert len(cluster.objects) == 2


async def test_idempotency_key_when_the_cache_has_not_seen_it_yet(client, cluster: FakeCluster) -> None:
    headers = {"Idempotency-Key": "op-2"}
    first = await (await create(client, headers=headers)).json()
    cluster.containers.forget_deleted(cluster.containers.get("tenant-a", first["id"]))  # hide it from the cache
    again = await create(client, headers=headers)
    assert again.status == 200 and (await again.json())["id"] == first["id"]
    assert len(cluster.objects) == 1


def reply_state(cluster: FakeCluster, container_id: str | None = None) -> list[str]:
    return [o["metadata"]["annotations"].get(names.ANNOTATION_REPLY) for o in cluster.objects.values()
            if container_id is None or resource.container_id(o) == container_id]


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def abandoned_create(client, body: dict, *, after: float = 0.2, headers: dict | None = None) -> None:
    """A create whose caller gives up (closes its connection) before the reply, as the SDK does
    on a timeout before it retries."""
    with pytest.raises(asyncio.TimeoutError):
        await create(client, body, headers=headers, timeout=aiohttp.ClientTimeout(total=after))


async def test_a_retry_gets_the_container_whose_reply_its_caller_never_got(cluster: FakeCluster) -> None:
    cluster.operator = None  # the container stays pending: the caller's timeout comes first
    client = await start_client(cluster, create_wait_seconds=1.0)
    try:
        await abandoned_create(client, {"name": "lost"}, after=0.3)
        await wait_until(lambda: reply_state(cluster) == ["lost"])  # recorded once its reply failed
        again = await create(client, {"name": "lost"}, headers={"x-stainless-retry-count": "1"})
        assert again.status == 200 and len(cluster.objects) == 1
        (obj,) = cluster.objects.values()
        assert (await again.json())["id"] == resource.container_id(obj)
        await wait_until(lambda: reply_state(cluster) == ["delivered"])
        # Its reply was delivered: a further retry of the same body is another caller's.
        other = await create(client, {"name": "lost"}, headers={"x-stainless-retry-count": "1"})
        assert other.status == 200 and len(cluster.objects) == 2
    finally:
        await client.close()


async def test_a_retry_never_gets_a_container_whose_reply_was_delivered(client, cluster: FakeCluster) -> None:
    cluster.lose_create_reply = True
    first = await create(client, {"name": "same body"})
    # The API server stored it although its reply was lost: the gateway finds it and answers 200.
    assert first.status == 200
    body = await first.json()
    await wait_until(lambda: reply_state(cluster, body["id"]) == ["delivered"])
    # Another caller sends the same body and retries it (its first attempt failed on the way).
    again = await create(client, {"name": "same body"}, headers={"x-stainless-retry-count": "1"})
    assert again.status == 200 and (await again.json())["id"] != body["id"]
    assert len(cluster.objects) == 2
    # Not a retry: the same body makes another container, as OpenAI does.
    await create(client, {"name": "same body"}, headers={"x-stainless-retry-count": "0"})
    assert len(cluster.objects) == 3


async def test_two_retries_of_one_lost_reply_get_it_once(cluster: FakeCluster) -> None:
    cluster.operator = None
    client = await start_client(cluster, create_wait_seconds=1.0)
    try:
        await abandoned_create(client, {"name": "twice"}, after=0.3)
        await wait_until(lambda: reply_state(cluster) == ["lost"])
        retries = await asyncio.gather(*(create(client, {"name": "twice"}, headers={"x-stainless-retry-count": "1"})
                                         for _ in range(2)))
        ids = [(await r.json())["id"] for r in retries]
        assert len(set(ids)) == 2 and len(cluster.objects) == 2  # one claimed it, the other made its own
    finally:
        await client.close()


async def test_a_retry_does_not_take_an_original_whose_caller_still_waits(cluster: FakeCluster) -> None:
    cluster.operator = None
    client = await start_client(cluster, create_wait_seconds=0.5)
    try:
        original = asyncio.create_task(create(client, {"name": "slow"}))
        while not cluster.objects:
            await asyncio.sleep(0.01)
        retry = await create(client, {"name": "slow"}, headers={"x-stainless-retry-count": "1"})
        first = await (await original).json()
        assert (await retry.json())["id"] != first["id"]  # two callers, two containers
        assert cluster.create_calls == 2
    finally:
        await client.close()


async def test_a_retry_while_its_abandoned_original_is_in_flight_waits_for_it(client, cluster: FakeCluster) -> None:
    cluster.create_delay = 0.5  # the original is still being written when the retry arrives
    await abandoned_create(client, {"name": "in flight"}, after=0.1)
    assert cluster.create_calls == 1 and not cluster.objects
    retry = await create(client, {"name": "in flight"}, headers={"x-stainless-retry-count": "1"})
    (obj,) = cluster.objects.values()
    assert retry.status == 200 and (await retry.json())["id"] == resource.container_id(obj)
    assert cluster.create_calls == 1


async def test_retrieve_records_debounced_activity(client, cluster: FakeCluster) -> None:
    body = await (await create(client)).json()
    for _ in range(5):
        got = await (await client.get(f"/v1/containers/{body['id']}", headers=AUTH_A)).json()
        assert got["last_active_at"] >= body["created_at"]
    await asyncio.sleep(0.5)  # > the 0.3 s debounce window: the trailing write has happened
    written = [a for a in cluster.annotations_written if names.ANNOTATION_LAST_ACTIVE in a[2]]
    assert len(written) == 2  # the first touch at once, the other four folded into one
    (obj,) = cluster.objects.values()
    assert obj["metadata"]["annotations"][names.ANNOTATION_LAST_ACTIVE].endswith("Z")


async def test_state_kept_for_a_container_goes_when_it_is_deleted_elsewhere(client, cluster: FakeCluster) -> None:
    """Deleted with kubectl (or after expiry): its activity and sidecar token go with it."""
    body = await (await create(client)).json()
    await client.get(f"/v1/containers/{body['id']}", headers=AUTH_A)
    (obj,) = cluster.objects.values()
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    activity = client.server.app[ACTIVITY]
    assert activity.seen(namespace, name) is not None
    cluster.containers.apply("DELETED", obj)
    assert activity.seen(namespace, name) is None


async def test_every_reply_has_a_request_id_and_json_content_type(client) -> None:
    for response in [await client.get("/v1/containers", headers=AUTH_A), await client.get("/nowhere"),
                     await client.put("/v1/containers", headers=AUTH_A), await client.get("/openapi.json")]:
        assert response.headers["x-request-id"].startswith("req_")
        assert response.content_type == "application/json"
    error = await error_of(await client.get("/v1/nope", headers=AUTH_A), 404)
    assert error["type"] == "invalid_request_error"
    await error_of(await client.put("/v1/containers", headers=AUTH_A), 405)


async def test_json_bodies_over_the_limit_are_413(cluster: FakeCluster) -> None:
    client = await start_client(cluster, max_json_bytes=1000)
    try:
        response = await client.post("/v1/containers", data=json.dumps({"name": "x" * 2000}),
                                     headers={**AUTH_A, "Content-Type": "application/json"})
        await error_of(response, 413)
    finally:
        await client.close()


async def test_openapi_health_and_readiness(cluster: FakeCluster) -> None:
    client = await start_client(cluster)
    try:
        doc = await (await client.get("/openapi.json")).json()
        assert {"/containers", "/containers/{container_id}", "/containers/{container_id}/files",
                "/containers/{container_id}/files/{file_id}",
                "/containers/{container_id}/files/{file_id}/content",
                "/files", "/files/{file_id}", "/files/{file_id}/content"} <= set(doc["paths"])
        assert {"ContainerCreateParams", "FileObject", "FileList"} <= set(doc["components"]["schemas"])
        assert (await client.get("/readyz")).status == 200
        cluster.containers.synced = False
        assert (await client.get("/readyz")).status == 503
        response = await client.get("/v1/containers", headers=AUTH_A)
        await error_of(response, 503)
        assert response.headers["Retry-After"] == "1"
        # Metrics answer without a key: never on the API port (the metrics port below).
        for headers in ({}, AUTH_A):
            await error_of(await client.get("/metrics", headers=headers), 404)
    finally:
        await client.close()


async def test_metrics_are_served_on_the_metrics_port_only(cluster: FakeCluster) -> None:
    import aiohttp

    from kontainers.cluster.process import free_port
    from kontainers.gateway.app import with_metrics_server

    metrics_port = free_port()
    client = await start_client(cluster, metrics_port=metrics_port, wrap=with_metrics_server)
    try:
        assert (await client.get("/v1/containers", headers=AUTH_A)).status == 200
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as reply:
                text = await reply.text()
                assert reply.status == 200 and reply.content_type == "text/plain"
            assert 'kontainers_http_requests_total{method="GET",route="/v1/containers",status="200"}' in text
            async with http.get(f"http://127.0.0.1:{metrics_port}/readyz") as reply:
                assert reply.status == 200
            async with http.get(f"http://127.0.0.1:{metrics_port}/v1/containers", headers=AUTH_A) as reply:
                assert reply.status == 404  # the API is not served there either
        await error_of(await client.get("/metrics"), 404)
    finally:
        await client.close()
    with pytest.raises(OSError):  # stopped with the app
        await asyncio.open_connection("127.0.0.1", metrics_port)


def test_the_metrics_port_cannot_be_the_api_port() -> None:
    from pydantic import ValidationError

    from kontainers.settings import GatewaySettings

    with pytest.raises(ValidationError, match="metrics_port must differ"):
        GatewaySettings(port=8080, metrics_port=8080)
    assert GatewaySettings(port=8080, metrics_port=0).metrics_port == 0  # 0: no metrics server


async def test_domain_secret_values_over_the_secret_limit_are_400(cluster: FakeCluster) -> None:
    client = await start_client(cluster, max_domain_secret_bytes=1000)
    try:
        policy = {"type": "allowlist", "allowed_domains": ["a.example.com"],
                  "domain_secrets": [{"domain": "a.example.com", "name": "K", "value": "v" * 1001}]}
        error = await error_of(await create(client, {"name": "x", "network_policy": policy}), 400)
        assert error["param"] == "network_policy.domain_secrets" and "v" * 20 not in error["message"]
        assert not cluster.objects and not cluster.secrets
    finally:
        await client.close()


async def test_cilium_mode_refuses_domain_secrets_before_writing_anything(cluster: FakeCluster) -> None:
    client = await start_client(cluster, egress_mode="cilium")
    try:
        policy = {"type": "allowlist", "allowed_domains": ["a.example.com"],
                  "domain_secrets": [{"domain": "a.example.com", "name": "K", "value": "s3cret-value"}]}
        error = await error_of(await create(client, {"name": "x", "network_policy": policy}), 400)
        assert error["param"] == "network_policy.domain_secrets" and error["code"] == "unsupported_parameter"
        assert "Cilium" in error["message"] and "s3cret-value" not in error["message"]
        assert not cluster.objects and not cluster.secrets
        del policy["domain_secrets"]
        response = await create(client, {"name": "y", "network_policy": policy})
        assert response.status == 200, "an allowlist without secrets is served in Cilium mode"
    finally:
        await client.close()


async def test_a_container_the_api_server_refuses_is_400_with_its_reason(client, cluster: FakeCluster) -> None:
    from kontainers.gateway.cluster import ClusterError

    cluster.reject_create = ClusterError(422, "Container.kontainers.dev \"x\" is invalid: spec.name: Too long")
    policy = {"type": "allowlist", "allowed_domains": ["a.example.com"],
              "domain_secrets": [{"domain": "a.example.com", "name": "K", "value": "v"}]}
    error = await error_of(await create(client, {"name": "x", "network_policy": policy}), 400)
    assert "spec.name: Too long" in error["message"]
    assert not cluster.secrets, "the Secret written before the refused Container is removed"
    cluster.reject_create = ClusterError(500, "etcd timeout")
    await error_of(await create(client), 500)
