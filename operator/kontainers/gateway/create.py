"""Creating a container, safely under the SDKs' retries.

The SDKs re-send a POST on timeouts, 408/409/429 and 5xx — also when the first attempt did create
the container and only the reply was lost. So:
- with an `Idempotency-Key`, the resource name is derived from (API key, Idempotency-Key) and
  stamped in an annotation: a repeat finds the container (in the cache, or by the name's 409)
  and returns it;
- without one, every create stamps a hash of (API key, body); a request the SDK marks as a retry
  (`x-stainless-retry-count` > 0) returns a container of the same tenant with that hash created
  within the retry window instead of making another — and if the original is still in flight
  in this process, waits for it;
- once the Container exists, nothing after it turns into an error reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from collections.abc import Mapping

from ..api.container import STATUSES
from ..api.container_create import ContainerCreateParams
from ..observability import CREATE_SECONDS
from ..resources import names
from . import resource
from .auth import Tenant
from .cluster import AlreadyExists, Cluster, ClusterError
from ..api.errors import APIError

log = logging.getLogger(__name__)

FINAL_STATUSES = tuple(s for s in STATUSES if s != "pending")  # what a create waits for


def idempotency_hash(tenant: Tenant, idempotency_key: str) -> str:
    return hashlib.sha256(f"{tenant.key_hash}\n{idempotency_key}".encode()).hexdigest()


def request_hash(tenant: Tenant, params: ContainerCreateParams) -> str:
    """Hash of the key and the canonical body; keyed, so it reveals nothing about secret values."""
    canonical = json.dumps(params.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{tenant.key_hash}\n{canonical}".encode()).hexdigest()


def _refusal(exc: Exception) -> APIError | None:
    """The API server refusing the resource (schema/CEL validation, admission, quota) is the
    caller's problem, not a server error: say why, and do not invite the SDK to retry."""
    if isinstance(exc, ClusterError) and exc.status in (400, 422):
        return APIError(400, f"The container was rejected: {exc.reason}", code="invalid_value")
    if isinstance(exc, ClusterError) and exc.status == 403:
        return APIError(403, f"The container was refused: {exc.reason}", type="permission_denied",
                        code="forbidden")
    return None


class ContainerCreator:
    def __init__(self, cluster: Cluster, *, wait_seconds: float, retry_window_seconds: float) -> None:
        self.cluster = cluster
        self.wait_seconds = wait_seconds
        self.retry_window_seconds = retry_window_seconds
        self._in_flight: dict[tuple[str, str], asyncio.Future] = {}

    async def create(self, tenant: Tenant, params: ContainerCreateParams, *,
                     idempotency_key: str | None = None, retry_count: int = 0,
                     skills: list[dict] | None = None) -> dict:
        """The Container object to answer with (status running once the operator got there in time).

        `skills`: the checked `spec.skills` entries (skill references resolved to their versions)."""
        started = time.perf_counter()
        body_hash = request_hash(tenant, params)
        idem = idempotency_hash(tenant, idempotency_key) if idempotency_key else None
        existing = self._find_existing(tenant, idem, body_hash, retry_count)
        if existing is None and idem is None and retry_count > 0:
            in_flight = self._in_flight.get((tenant.namespace, body_hash))
            if in_flight is not None:
                try:
                    existing = await asyncio.shield(in_flight)
                except Exception:
                    existing = None  # the original failed: this attempt creates
        if existing is not None:
            log.info("create answered with existing container %s (retry)", resource.container_id(existing))
            return await self._await_running(existing)

        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._in_flight[(tenant.namespace, body_hash)] = future
        try:
            obj = await self._write(tenant, params, idem, body_hash, skills)
            future.set_result(obj)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody may be waiting on it
            raise
        finally:
            self._in_flight.pop((tenant.namespace, body_hash), None)
        obj = await self._await_running(obj)
        CREATE_SECONDS.observe(time.perf_counter() - started)
        return obj

    # --- finding the container a retry refers to ------------------------------------------------

    def _find_existing(self, tenant: Tenant, idem: str | None, body_hash: str, retry_count: int) -> dict | None:
        candidates = self.cluster.containers.in_namespace(tenant.namespace)
        if idem is not None:
            return next((o for o in candidates if resource.annotations(o).get(names.ANNOTATION_IDEMPOTENCY) == idem),
                        None)
        if retry_count <= 0:
            return None
        recent = time.time() - self.retry_window_seconds
        matches = [o for o in candidates
                   if resource.annotations(o).get(names.ANNOTATION_REQUEST_HASH) == body_hash
                   and resource.created_at(o) >= recent]
        return max(matches, key=resource.created_at, default=None)

    # --- writing ---------------------------------------------------------------------------

    async def _write(self, tenant: Tenant, params: ContainerCreateParams, idem: str | None, body_hash: str,
                     skills: list[dict] | None = None) -> dict:
        namespace = tenant.namespace
        name = resource.resource_name(params.name, idem[:10] if idem else None)
        secret_name = names.domain_secrets_name(name)
        secret_data = resource.domain_secret_data(params)
        annotations = {names.ANNOTATION_REQUEST_HASH: body_hash,
                       names.ANNOTATION_CREATED_AT: resource.format_precise_time(datetime.now(timezone.utc))}
        if idem:
            annotations[names.ANNOTATION_IDEMPOTENCY] = idem
        obj = resource.new_resource(namespace, name, resource.spec_from_params(params, secret_name, skills), annotations)

        if secret_data:
            # Before the Container, so the operator never sees a reference to a missing Secret.
            await self.cluster.put_secret(namespace, secret_name, secret_data, {
                names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_CONTAINER: name})
        try:
            created = await self.cluster.create_container(obj)
        except AlreadyExists:
            created = await self.cluster.get_container(namespace, name)
            if created is None or (idem and resource.annotations(created).get(names.ANNOTATION_IDEMPOTENCY) != idem):
                raise APIError(409, f"A container resource named {name!r} already exists.", code="conflict") from None
        except Exception as exc:
            # The reply may have been lost after the API server stored it: look before failing.
            created = await self._recover(namespace, name, body_hash)
            if created is None:
                if secret_data:
                    await self._delete_secret_quietly(namespace, secret_name)
                refusal = _refusal(exc)
                if refusal is not None:
                    raise refusal from None
                raise
        self.cluster.containers.add_if_absent(created)
        if secret_data:
            try:
                await self.cluster.own_secret(namespace, secret_name, resource.owner_reference(created))
            except Exception as exc:  # the container exists: never fail the request for this
                log.warning("could not set the owner of Secret %s/%s: %s", namespace, secret_name, exc)
        log.info("created container %s (%s/%s)", resource.container_id(created), namespace, name)
        return created

    async def _recover(self, namespace: str, name: str, body_hash: str) -> dict | None:
        try:
            found = await self.cluster.get_container(namespace, name)
        except Exception:
            return None
        if found and resource.annotations(found).get(names.ANNOTATION_REQUEST_HASH) == body_hash:
            return found
        return None

    async def _delete_secret_quietly(self, namespace: str, name: str) -> None:
        try:
            await self.cluster.delete_secret(namespace, name)
        except Exception as exc:
            log.warning("could not delete the unused Secret %s/%s: %s", namespace, name, exc)

    async def _await_running(self, obj: Mapping) -> dict:
        """The newest view of `obj` once it is running (or failed/expired), or when the wait ends."""
        namespace, cid = obj["metadata"]["namespace"], resource.container_id(obj)
        cache = self.cluster.containers

        def settled() -> dict | None:
            current = cache.get(namespace, cid)
            return current if current is not None and resource.status_of(current) in FINAL_STATUSES else None

        done = await cache.wait_for(settled, self.wait_seconds)
        return done or cache.get(namespace, cid) or dict(obj)
