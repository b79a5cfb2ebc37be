"""The watch-fed cache, the list+watch loop (410 Gone → relist), and the activity debounce."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest

from kontainers.gateway.activity import ActivityRecorder
from kontainers.gateway.cache import ContainerCache
from kontainers.kube import list_watch
from kontainers.resources import names


def container(name: str, namespace: str = "ns", uid: str | None = None, **status) -> dict:
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid or f"uid-{namespace}-{name}",
                         "creationTimestamp": "2030-01-01T00:00:00Z", "resourceVersion": "1"},
            "spec": {"name": name}, "status": status}


def cid(obj: dict) -> str:
    return names.container_id(obj["metadata"]["uid"])


def test_index_by_id_and_namespace() -> None:
    cache = ContainerCache()
    a, b = container("a"), container("b", namespace="other")
    cache.replace([a, b])
    assert cache.get("ns", cid(a)) is a
    assert cache.get("ns", cid(b)) is None  # another tenant's id is invisible
    assert cache.in_namespace("other") == [b]


def test_events_and_deletion() -> None:
    cache = ContainerCache()
    a = container("a")
    cache.apply("ADDED", a)
    cache.apply("MODIFIED", {**a, "status": {"status": "running"}})
    assert cache.get("ns", cid(a))["status"]["status"] == "running"
    deleting = {**a, "metadata": {**a["metadata"], "deletionTimestamp": "2030-01-01T00:00:01Z"}}
    cache.apply("MODIFIED", deleting)
    assert cache.get("ns", cid(a)) is None
    assert cache.gone_key(cid(a)) is not None


def test_our_delete_hides_late_events() -> None:
    cache = ContainerCache()
    a = container("a")
    cache.apply("ADDED", a)
    cache.forget_deleted(a)
    cache.apply("MODIFIED", a)  # an event from before the delete, arriving late
    assert cache.get("ns", cid(a)) is None


def test_replace_of_one_namespace_keeps_the_others() -> None:
    cache = ContainerCache()
    a, b = container("a"), container("b", namespace="other")
    cache.replace([a, b])
    cache.replace([], namespace="ns")
    assert cache.get("ns", cid(a)) is None and cache.get("other", cid(b)) is b


async def test_wait_for_wakes_on_change() -> None:
    cache = ContainerCache()
    a = container("a")
    cache.apply("ADDED", a)

    async def run_later() -> None:
        await asyncio.sleep(0.05)
        cache.apply("MODIFIED", {**a, "status": {"status": "running"}})

    task = asyncio.create_task(run_later())
    found = await cache.wait_for(lambda: (cache.get("ns", cid(a)) or {}).get("status", {}).get("status") == "running",
                                 timeout=5)
    await task
    assert found is True
    assert await cache.wait_for(lambda: False, timeout=0.05) is False


# --- list+watch against a scripted API server -------------------------------------------------

class Response:
    """Enough of an aiohttp response for kubernetes_asyncio's list and watch."""

    def __init__(self, body: bytes = b"", lines: list[bytes] | None = None) -> None:
        self._body = body
        self._lines = list(lines or [])
        self.content = self
        self.status = 200

    async def read(self) -> bytes:
        return self._body

    async def readline(self) -> bytes:
        if self._lines:
            return self._lines.pop(0)
        await asyncio.sleep(3600)
        return b""

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def event(kind: str, obj: dict) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


async def test_list_watch_relists_after_410_gone() -> None:
    cache = ContainerCache()
    a, b = container("a"), container("b")
    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
    script = [
        Response(json.dumps({"items": [a], "metadata": {"resourceVersion": "10"}}).encode()),
        Response(lines=[event("MODIFIED", {**a, "status": {"status": "running"}}), event("ERROR", gone)]),
        Response(json.dumps({"items": [b], "metadata": {"resourceVersion": "20"}}).encode()),
        Response(lines=[]),
    ]
    calls: list[dict] = []

    async def list_call(**kwargs):
        calls.append(kwargs)
        return script.pop(0)

    lists = []

    def on_list(items):
        lists.append(items)
        cache.replace(items)

    task = asyncio.create_task(list_watch(list_call, what="test", on_list=on_list, on_event=cache.apply))
    try:
        await cache.wait_for(lambda: len(lists) == 2, timeout=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(lists) == 2, calls
    assert calls[1]["watch"] is True and calls[1]["resource_version"] == "10"
    assert cache.get("ns", cid(a)) is None and cache.get("ns", cid(b)) is not None


# --- activity debounce ------------------------------------------------------------------------

async def test_activity_is_written_at_most_once_per_window_and_never_lost() -> None:
    writes: list[tuple[str, str, datetime]] = []

    async def write(namespace: str, name: str, moment: datetime) -> None:
        writes.append((namespace, name, moment))

    recorder = ActivityRecorder(write, debounce_seconds=0.6)
    start = datetime(2030, 1, 1, tzinfo=timezone.utc)
    for n in range(20):
        recorder.touch("ns", "c", start + timedelta(seconds=n))
        await asyncio.sleep(0.001)
    recorder.touch("ns", "other", start)
    await asyncio.sleep(0.05)
    assert [w[2] for w in writes if w[1] == "c"] == [start]  # the first, at once
    await asyncio.sleep(0.7)
    own = [w[2] for w in writes if w[1] == "c"]
    assert own == [start, start + timedelta(seconds=19)]  # the rest folded into one trailing write
    assert [w[1] for w in writes].count("other") == 1
    assert recorder.seen("ns", "c") == start + timedelta(seconds=19)
    recorder.touch("ns", "c", start + timedelta(seconds=30))  # within the window of the trailing write
    await recorder.close()  # flushes what is pending
    assert writes[-1][2] == start + timedelta(seconds=30)


async def test_activity_write_failures_are_not_raised() -> None:
    async def write(namespace: str, name: str, moment: datetime) -> None:
        raise RuntimeError("api server down")

    recorder = ActivityRecorder(write, debounce_seconds=0.1)
    recorder.touch("ns", "c")
    await recorder.close()


def test_cached_containers_drop_managed_fields_and_share_repeated_strings() -> None:
    cache = ContainerCache()
    a, b = (json.loads(json.dumps({**container(n), "status": {"status": "pending"}})) for n in ("a", "b"))
    for obj in (a, b):
        obj["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    expected = json.loads(json.dumps(a))
    del expected["metadata"]["managedFields"]
    cache.apply("ADDED", a)
    cache.apply("ADDED", b)
    assert cache.get("ns", cid(a)) is a and a == expected
    status_a, status_b = cache.get("ns", cid(a))["status"], cache.get("ns", cid(b))["status"]
    assert status_a["status"] is status_b["status"]  # one "pending" for all, not one per object
    assert next(iter(status_a)) is next(iter(status_b))


async def test_a_cancelled_wait_ends_even_when_a_change_arrives_with_the_cancel() -> None:
    """A stopping gateway cancels its waiters; a change in the same loop step must not keep one alive
    (asyncio.wait_for on Python 3.11 returns the event instead of raising, and the wait went on)."""
    cache = ContainerCache()
    waiter = asyncio.create_task(cache.wait_for(lambda: False, 30))
    await asyncio.sleep(0.01)  # waiting on the change event
    cache._notify()
    waiter.cancel()
    done, _ = await asyncio.wait({waiter}, timeout=2)
    assert waiter in done and waiter.cancelled()
