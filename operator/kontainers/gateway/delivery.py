"""The gateway's side of file delivery: put a Container's `fileIds` and `skills` into its pod.

Driven by the gateway's Container watch cache: a Container whose pod is up (status.podIP set) but
whose `kontainers.dev/files-delivered` annotation does not name that pod IP gets its files
streamed from the store into the sidecar (`PUT /files?name=`, source `user`) and its skill
bundles unpacked (`PUT /skills`: inline skills' and resolved references' pinned bundles alike); then the annotation is set and the operator marks it running
(kontainers.resources.delivery_gate). A same-named upload replaces the file, so delivering twice (a retry,
two gateway replicas) is harmless. A sidecar that is not reachable yet is retried with backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

from kontainers.resources import delivery_gate as gate
from kontainers.gateway.file_inputs import copy_into_container
from kontainers.files.skills import SkillNotFound, SkillStore
from kontainers.files.store import FileNotFound, TenantFileStore
from kontainers.gateway.skill_refs import pick_version
from kontainers.gateway.cache import ContainerCache
from kontainers.api.errors import APIError
from kontainers.gateway.sidecar import SidecarClient
from kontainers.resources import names

log = logging.getLogger(__name__)

Annotate = Callable[[str, str, Mapping[str, str]], Awaitable[None]]
Key = tuple[str, str]  # (Container uid, pod IP)
_SETTLED = ("failed", "expired")


def delivery_names(filenames: list[tuple[str, str]]) -> dict[str, str]:
    """file id → name in /mnt/data: the upload name, made unique when two files share one."""
    taken: set[str] = set()
    out = {}
    for file_id, filename in filenames:
        name = filename
        if name in taken:
            path = PurePosixPath(filename)
            name = f"{path.stem}-{file_id}{path.suffix}"
        taken.add(name)
        out[file_id] = name
    return out


class Delivery:
    def __init__(self, cache: ContainerCache, store: TenantFileStore, sidecars: SidecarClient, annotate: Annotate,
                 *, skills: SkillStore | None = None, first_retry: float = 0.25, max_retry: float = 5.0,
                 idle_check: float = 30.0) -> None:
        self.cache, self.store, self.sidecars, self.annotate = cache, store, sidecars, annotate
        self.skills = skills  # the Skills API store, for references written without a bundle
        self.first_retry, self.max_retry, self.idle_check = first_retry, max_retry, idle_check
        self._active: dict[Key, asyncio.Task[None]] = {}
        # Delivered, annotation written, but the watch has not shown it yet: not due again.
        self._delivered: set[Key] = set()

    async def run(self) -> None:
        """Deliver for as long as the gateway runs (cancel to stop)."""
        try:
            while True:
                try:
                    for obj in await self.cache.wait_for(self._due, self.idle_check) or []:
                        self._start(obj)
                except Exception:  # never let one bad object stop every future delivery
                    log.exception("file delivery loop failed; continuing")
                    await asyncio.sleep(1.0)
        finally:
            for task in list(self._active.values()):
                task.cancel()

    def _due(self) -> list[dict]:
        due = []
        for obj in self.cache.all():
            key = _key(obj)
            if key is None:
                continue
            if gate.delivered_to(obj) == key[1]:
                self._delivered.discard(key)  # the watch shows it: nothing left to remember
                continue
            status = (obj.get("status") or {}).get("status")
            if status in _SETTLED or not gate.wants_delivery(obj) or key in self._active or key in self._delivered:
                continue
            due.append(obj)
        return due

    def _start(self, obj: dict) -> None:
        key = _key(obj)
        assert key is not None
        task = asyncio.create_task(self._attempts(key, obj), name=f"deliver {obj['metadata']['name']}")
        self._active[key] = task
        task.add_done_callback(lambda _: self._active.pop(key, None))

    async def _attempts(self, key: Key, obj: dict) -> None:
        """Deliver, retrying with backoff while the Container still waits for this very pod."""
        namespace, cid = obj["metadata"]["namespace"], names.container_id(key[0])
        attempt = 0
        while True:
            current = self.cache.get(namespace, cid)
            if current is None or _key(current) != key or gate.delivered_to(current) == key[1]:
                return  # deleted, moved to another pod, or delivered by someone else
            try:
                await self.deliver(current)
                self._delivered.add(key)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                attempt += 1
                delay = min(self.max_retry, self.first_retry * 2 ** (attempt - 1))
                log.info("delivery to %s/%s not done yet (%s); retrying in %.2fs", namespace,
                         obj["metadata"]["name"], _why(exc), delay)
                await asyncio.sleep(delay)

    async def deliver(self, obj: Mapping[str, Any]) -> None:
        """Copy every file and skill of `obj` into its pod, then mark the delivery done."""
        meta, spec = obj["metadata"], obj.get("spec") or {}
        namespace, pod_ip = meta["namespace"], obj["status"]["podIP"]
        started, sent = time.monotonic(), 0
        records = []
        for file_id in dict.fromkeys(spec.get("fileIds") or []):  # each file once
            try:
                records.append(await self.store.stat(namespace, file_id))
            except FileNotFound:
                log.warning("file %s of %s/%s is gone from the store; not delivered", file_id, namespace, meta["name"])
        names_in_pod = delivery_names([(r.id, r.filename) for r in records])
        for record in records:
            try:
                await copy_into_container(self.store, record, self.sidecars.upload, obj, names_in_pod[record.id])
                sent += record.bytes
            except APIError as exc:
                if exc.status >= 500 or exc.status == 401:
                    raise
                log.warning("file %s refused by the sidecar of %s/%s: %s", record.id, namespace, meta["name"],
                            exc.message)
        for skill in spec.get("skills") or []:
            bundle_id, expected = await self._bundle_of(namespace, skill)
            if not bundle_id:
                log.warning("skill %s of %s/%s has no bundle to deliver", skill.get("skillId") or skill.get("name"),
                            namespace, meta["name"])
                continue
            try:
                digest = await _sha256(self.store.read(namespace, bundle_id))
            except FileNotFound:
                log.warning("skill bundle %s of %s/%s is gone; not delivered", bundle_id, namespace, meta["name"])
                continue
            if expected and digest != expected:
                log.warning("skill bundle %s of %s/%s does not match its sha256; not delivered", bundle_id,
                            namespace, meta["name"])
                continue
            try:
                await self.sidecars.put_skill(obj, self.store.read(namespace, bundle_id))
            except APIError as exc:
                if exc.status >= 500 or exc.status == 401:
                    raise
                log.warning("skill %s refused by the sidecar of %s/%s: %s", skill.get("name"), namespace,
                            meta["name"], exc.message)
        await self.annotate(namespace, meta["name"], {names.ANNOTATION_FILES_DELIVERED: pod_ip})
        log.info("delivered %d files (%d bytes) and %d skills to %s/%s in %.2fs", len(records), sent,
                 len(spec.get("skills") or []), namespace, meta["name"], time.monotonic() - started)


    async def _bundle_of(self, namespace: str, skill: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """(bundle file id, sha256) of a spec.skills entry: its own bundle (inline skills, and
        references the gateway resolved at create), else the version a kubectl-made reference
        names, looked up in the Skills API store now."""
        bundle = skill.get("bundle") or {}
        if bundle.get("fileId") or skill.get("type") != "skill_reference" or self.skills is None:
            return bundle.get("fileId"), bundle.get("sha256")
        try:
            record = await self.skills.get(namespace, str(skill.get("skillId")))
            version = pick_version(record, skill.get("version"))
        except (SkillNotFound, APIError) as exc:
            log.warning("skill_reference %s (version %s) in %s resolves to nothing: %s", skill.get("skillId"),
                        skill.get("version") or "default", namespace, _why(exc) if isinstance(exc, APIError) else exc)
            return None, None
        return version.bundle_id, version.sha256


async def _sha256(chunks: AsyncIterator[bytes]) -> str:
    digest = hashlib.sha256()
    async for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _key(obj: Mapping[str, Any]) -> Key | None:
    pod_ip = (obj.get("status") or {}).get("podIP")
    return (obj["metadata"]["uid"], pod_ip) if pod_ip else None


def _why(exc: Exception) -> str:
    return exc.message if isinstance(exc, APIError) else f"{type(exc).__name__}: {exc}"
