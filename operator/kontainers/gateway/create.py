"""Creating a container, safely under the SDKs' retries.

The SDKs re-send a POST on timeouts, 408/409/429 and 5xx — also when the first attempt did create
the container and only the reply was lost. So:
- with an `Idempotency-Key`, the resource name is derived from (API key, Idempotency-Key) and
  stamped in an annotation: a repeat finds the container (in the cache, or by the name's 409)
  and returns it;
- without one, every create stamps a hash of (API key, body); a request the SDK marks as a retry
  (`x-stainless-retry-count` > 0) returns a container of the same tenant with that hash created
  within the retry window instead of making another — but only one whose reply did not reach
  its caller (reply_claims.py), so two callers sending the same body never share a container.
  An original still in flight in this process is waited for when its caller has gone;
- once the Container exists, nothing after it turns into an error reply.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from collections.abc import Mapping

from ..api.container import STATUSES
from ..api.container_create import ContainerCreateParams
from ..observability import CREATE_SECONDS
from ..resources import names
from . import reply_claims, resource
from .auth import Tenant
from .reply_claims import Connected, ReplyClaim
from .cluster import AlreadyExists, Cluster, ClusterError
from ..api.errors import APIError

log = logging.getLogger(__name__)

FINAL_STATUSES = tuple(s for s in STATUSES if s != "pending")  # what a create waits for
# How long past its own wait a retry waits for another replica's attempt to say whether its reply
# was delivered, before taking the container (that replica is then presumed gone).
SETTLE_MARGIN_SECONDS = 5.0


def _always() -> bool:
    return True


def _gone() -> bool:
    return False


@dataclass
class Answer:
    """What a create answers with, and (without an Idempotency-Key) its claim to answer with it."""

    obj: dict
    claim: ReplyClaim | None = None


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
        # Originals being written here, by (namespace, body hash): their write and their caller.
        self._in_flight: dict[tuple[str, str], tuple[asyncio.Future, Connected]] = {}
        self._answering: dict[str, Connected] = {}  # nonce → caller, of the replies this process owes
        self._settling: set[asyncio.Task] = set()

    async def create(self, tenant: Tenant, params: ContainerCreateParams, *,
                     idempotency_key: str | None = None, retry_count: int = 0,
                     skills: list[dict] | None = None, connected: Connected = _always) -> Answer:
        """The Container to answer with (status running once the operator got there in time).

        `skills`: the checked `spec.skills` entries (skill references resolved to their versions);
        `connected`: whether the caller is still waiting (reply_claims.connection_open). Call
        `settle` once the reply was sent."""
        started = time.perf_counter()
        body_hash = request_hash(tenant, params)
        idem = idempotency_hash(tenant, idempotency_key) if idempotency_key else None
        if idem is not None:
            existing = self._find_keyed(tenant, idem)
            if existing is not None:
                log.info("create answered with existing container %s (Idempotency-Key)",
                         resource.container_id(existing))
                return Answer(await self._await_running(existing))
        elif retry_count > 0:
            claimed = await self._claim_for_retry(tenant, body_hash, connected)
            if claimed is not None:
                log.info("create answered with existing container %s (retry of a lost reply)",
                         resource.container_id(claimed.obj))
                claimed.obj = await self._await_answer(claimed)
                return claimed

        key = (tenant.namespace, body_hash)
        nonce = reply_claims.new_nonce() if idem is None else None
        if nonce:
            self._answering[nonce] = connected
        # A task, so that a caller who goes away (a cancelled handler) does not cut the write short:
        # the container it makes is then its retry's.
        write = asyncio.ensure_future(self._write(tenant, params, idem, body_hash, skills, nonce))
        self._in_flight[key] = (write, connected)
        write.add_done_callback(lambda task: self._written(key, task, nonce))
        try:
            obj = await asyncio.shield(write)
        except asyncio.CancelledError:
            write.add_done_callback(lambda task: self._abandoned(task, nonce))
            raise
        claim = ReplyClaim(obj["metadata"]["namespace"], obj["metadata"]["name"], nonce) if nonce else None
        obj = await self._await_answer(Answer(obj, claim))
        CREATE_SECONDS.observe(time.perf_counter() - started)
        return Answer(obj, claim)

    def _written(self, key: tuple[str, str], task: asyncio.Future, nonce: str | None) -> None:
        if self._in_flight.get(key, (None,))[0] is task:
            del self._in_flight[key]
        if nonce and (task.cancelled() or task.exception() is not None):
            self._answering.pop(nonce, None)  # nothing was made: no reply is owed

    def _abandoned(self, task: asyncio.Future, nonce: str | None) -> None:
        """The caller left while its container was being written: record its reply as lost."""
        if nonce and not task.cancelled() and task.exception() is None:
            obj = task.result()
            self.settle(Answer(obj, ReplyClaim(obj["metadata"]["namespace"], obj["metadata"]["name"], nonce)), False)

    async def _await_answer(self, answer: Answer) -> dict:
        """`_await_running`, recording the reply as lost if the caller leaves meanwhile."""
        try:
            return await self._await_running(answer.obj)
        except asyncio.CancelledError:
            self.settle(answer, False)
            raise

    def settle(self, answer: Answer, delivered: bool) -> None:
        """Record whether the reply naming `answer.obj` reached its caller (in the background:
        the reply is already out)."""
        if answer.claim is None:
            return
        task = asyncio.get_running_loop().create_task(self._settle(answer.claim, delivered))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, claim: ReplyClaim, delivered: bool) -> None:
        outcome = reply_claims.DELIVERED if delivered else reply_claims.LOST
        try:
            if not await self.cluster.swap_annotation(claim.namespace, claim.name, reply_claims.KEY, claim.value,
                                                      outcome):
                # Expected when this reply's caller had gone and its retry came first.
                log.info("container %s/%s was claimed by a retry before its reply was recorded as %s",
                            claim.namespace, claim.name, outcome)
            elif not delivered:
                log.info("the reply naming container %s/%s did not reach its caller; a retry may claim it",
                         claim.namespace, claim.name)
        except Exception as exc:
            log.warning("could not record the reply of container %s/%s as %s: %s", claim.namespace, claim.name,
                        outcome, exc)
        finally:
            self._answering.pop(claim.nonce, None)

    # --- finding the container a retry refers to ------------------------------------------------

    def _find_keyed(self, tenant: Tenant, idem: str) -> dict | None:
        return next((o for o in self.cluster.containers.in_namespace(tenant.namespace)
                     if resource.annotations(o).get(names.ANNOTATION_IDEMPOTENCY) == idem), None)

    async def _claim_for_retry(self, tenant: Tenant, body_hash: str, connected: Connected) -> Answer | None:
        """A container of this body whose reply was lost, claimed for this retry; None: create anew."""
        in_flight = self._in_flight.get((tenant.namespace, body_hash))
        if in_flight is not None and not in_flight[1]():
            # The original is still being written here and its caller has gone: this is its retry.
            try:
                await asyncio.shield(in_flight[0])
            except Exception:
                pass  # the original failed: the candidates below decide
        deadline = time.monotonic() + self.wait_seconds + SETTLE_MARGIN_SECONDS
        recent = time.time() - self.retry_window_seconds
        candidates = sorted((o for o in self.cluster.containers.in_namespace(tenant.namespace)
                             if resource.annotations(o).get(names.ANNOTATION_REQUEST_HASH) == body_hash
                             and resource.created_at(o) >= recent), key=resource.created_at, reverse=True)
        for candidate in candidates:
            claimed = await self._claim(candidate, connected, deadline)
            if claimed is not None:
                return claimed
        return None

    async def _claim(self, obj: Mapping, connected: Connected, deadline: float) -> Answer | None:
        namespace, name, cid = obj["metadata"]["namespace"], obj["metadata"]["name"], resource.container_id(obj)
        cache = self.cluster.containers

        def reply_state() -> str | None:
            current = cache.get(namespace, cid)
            return resource.annotations(current).get(reply_claims.KEY) if current is not None else None

        value = reply_state()
        answerer = reply_claims.pending_nonce(value)
        if answerer is not None and answerer not in self._answering:
            # Another replica is answering (or has answered: its record is on the way): wait for it.
            await cache.wait_for(lambda: reply_state() != value, max(0.0, deadline - time.monotonic()))
            value = reply_state()
        for _ in range(3):  # the state may move under us (its answerer recording `lost`): look again
            answerer = reply_claims.pending_nonce(value)
            if value is None or value == reply_claims.DELIVERED:
                return None  # its caller has it (or it was not made by a create of this gateway)
            if answerer is not None and self._answering.get(answerer, _gone)():
                return None  # another caller is waiting for that reply here
            nonce = reply_claims.new_nonce()
            self._answering[nonce] = connected
            try:
                swapped = await self.cluster.swap_annotation(namespace, name, reply_claims.KEY, value,
                                                             reply_claims.pending(nonce))
            except Exception as exc:
                log.warning("could not claim container %s/%s for a retry: %s", namespace, name, exc)
                swapped = False
            if swapped:
                return Answer(cache.get(namespace, cid) or dict(obj), ReplyClaim(namespace, name, nonce))
            self._answering.pop(nonce, None)
            current = await self.cluster.get_container(namespace, name)
            value = resource.annotations(current).get(reply_claims.KEY) if current else None
        return None

    # --- writing ---------------------------------------------------------------------------

    async def _write(self, tenant: Tenant, params: ContainerCreateParams, idem: str | None, body_hash: str,
                     skills: list[dict] | None, nonce: str | None) -> dict:
        namespace = tenant.namespace
        name = resource.resource_name(params.name, idem[:10] if idem else None)
        secret_name = names.domain_secrets_name(name)
        secret_data = resource.domain_secret_data(params)
        annotations = {names.ANNOTATION_REQUEST_HASH: body_hash,
                       names.ANNOTATION_CREATED_AT: resource.format_precise_time(datetime.now(timezone.utc))}
        if idem:
            annotations[names.ANNOTATION_IDEMPOTENCY] = idem
        if nonce:
            annotations[reply_claims.KEY] = reply_claims.pending(nonce)
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
